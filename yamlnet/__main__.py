from yamlnet.cli import main

main()
