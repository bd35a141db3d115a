"""yamlnet-channelscale: the layer type ``channelscale`` (see channelscale.layers)."""
