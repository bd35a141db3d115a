"""The fast kernels against their definitions."""

import numpy as np
import pytest

from yamlnet import kernels


def im2col_naive(xp, f, s, n_h, n_w):
    n, _, _, c = xp.shape
    rows = []
    for i in range(n):
        for r in range(n_h):
            for q in range(n_w):
                rows.append(xp[i, r * s:r * s + f, q * s:q * s + f, :].reshape(-1))
    return np.array(rows).reshape(n * n_h * n_w, f * f * c)


def input_grad_naive(dz, w, s, padded_shape):
    """d/dxp of sum(conv(xp) · dz), one window at a time."""
    dxp = np.zeros(padded_shape)
    f = w.shape[0]
    n, n_h, n_w, _ = dz.shape
    for i in range(n):
        for r in range(n_h):
            for q in range(n_w):
                dxp[i, r * s:r * s + f, q * s:q * s + f, :] += np.tensordot(w, dz[i, r, q], axes=([3], [0]))
    return dxp


@pytest.mark.parametrize("shape, f, s", [((2, 7, 7, 3), 3, 1), ((2, 9, 30, 1), 5, 1), ((1, 11, 12, 2), 3, 2),
                                         ((2, 8, 8, 16), 2, 2), ((2, 9, 31, 1), 3, 2), ((2, 6, 20, 3), 2, 1)])
def test_im2col_both_layouts_match_the_definition(shape, f, s, rng):
    xp = rng.standard_normal(shape)
    n_h, n_w = (shape[1] - f) // s + 1, (shape[2] - f) // s + 1
    cols = kernels.im2col(xp, f, s, n_h, n_w)
    assert np.array_equal(cols, im2col_naive(xp, f, s, n_h, n_w))
    buffer = np.empty(cols.size + 5)
    assert np.array_equal(kernels.im2col(xp, f, s, n_h, n_w, out=buffer[:cols.size]), cols)


@pytest.mark.parametrize("shape, f", [((2, 12, 12, 1), 5), ((2, 9, 11, 3), 2), ((3, 10, 9, 3), 3),  # short rows
                                      ((2, 8, 10, 6), 3)])                                          # wide rows
def test_columns_by_window_position_are_the_definitions_rows_regrouped(shape, f, rng):
    xp = rng.standard_normal(shape)
    n_hc, n_wc = shape[1] - f + 1, shape[2] - f + 1  # the conv's output, stride 1
    n_h, n_w = n_hc // 2, n_wc // 2  # a 2 × 2 / 2 pool's
    every = im2col_naive(xp, f, 1, n_hc, n_wc).reshape(shape[0], n_hc, n_wc, -1)
    blocks = kernels.im2col_by_window_position(xp, f, n_h, n_w, np.empty(4 * shape[0] * n_h * n_w * f * f * shape[3]))
    for (a, b), block in zip(((0, 0), (0, 1), (1, 0), (1, 1)), blocks):
        expected = every[:, a:2 * n_h:2, b:2 * n_w:2].reshape(-1, f * f * shape[3])
        assert np.array_equal(block, expected), (a, b)


@pytest.mark.parametrize("shape, f, s, k", [((2, 7, 7, 3), 3, 1, 4), ((2, 9, 9, 2), 3, 2, 3), ((1, 10, 11, 2), 4, 3, 2),
                                            ((2, 6, 6, 1), 1, 2, 2),
                                            # wide enough for the widened rows (zero tails wrap):
                                            ((3, 5, 40, 2), 3, 1, 3), ((3, 9, 41, 3), 3, 2, 2), ((2, 7, 50, 1), 4, 3, 2)])
@pytest.mark.parametrize("cache_bytes", [kernels.CACHE_BYTES, 1])  # one slice of the batch, or one per sample
@pytest.mark.parametrize("banded", [None, True, False])  # as chosen by shape, or forced either way
def test_input_gradient_is_the_adjoint_of_the_convolution(shape, f, s, k, cache_bytes, banded, rng,
                                                          monkeypatch):
    monkeypatch.setattr(kernels, "CACHE_BYTES", cache_bytes)
    if banded is not None:
        monkeypatch.setattr(kernels, "banded_pays", lambda f, w_p: banded)
    n_h, n_w = (shape[1] - f) // s + 1, (shape[2] - f) // s + 1
    dz = rng.standard_normal((shape[0], n_h, n_w, k))
    w = rng.standard_normal((f, f, shape[3], k))
    scratch = kernels.Scratch()
    for _ in range(2):  # the second call reuses the scratch buffers
        dxp = kernels.conv_input_grad(dz, w, s, shape, scratch)
        assert np.allclose(dxp, input_grad_naive(dz, w, s, shape))


@pytest.mark.parametrize("shape, f, p, k", [((2, 7, 7, 3), 3, 1, 4), ((2, 6, 9, 16), 3, 1, 8),  # "same"
                                            ((1, 8, 6, 2), 5, 2, 3), ((2, 9, 30, 1), 5, 2, 2),  # f = 5, "same"
                                            ((2, 5, 5, 2), 2, 1, 3), ((2, 6, 5, 3), 4, 2, 2),   # even f
                                            ((2, 5, 6, 2), 3, 2, 3), ((2, 4, 4, 1), 5, 4, 2)])  # p up to f − 1
@pytest.mark.parametrize("cache_bytes", [kernels.CACHE_BYTES, 1])  # one slice of the batch, or one per sample
def test_gradients_from_dz_columns_equal_the_definitions(shape, f, p, k, cache_bytes, rng, monkeypatch):
    monkeypatch.setattr(kernels, "CACHE_BYTES", cache_bytes)
    assert kernels.grads_from_dz_columns_pay(f, 1, p)
    x = rng.standard_normal(shape)
    padded_shape = (shape[0], shape[1] + 2 * p, shape[2] + 2 * p, shape[3])
    n_h, n_w = padded_shape[1] - f + 1, padded_shape[2] - f + 1
    dz = rng.standard_normal((shape[0], n_h, n_w, k))
    w = rng.standard_normal((f, f, shape[3], k))
    scratch = kernels.Scratch()
    for _ in range(2):  # the second call reuses the scratch buffers
        dx, dw = kernels.conv_grads_from_dz_columns(x, dz, w, p, scratch)
        assert np.allclose(dx, kernels.unpad(input_grad_naive(dz, w, 1, padded_shape), p))
        cols = im2col_naive(kernels.pad(x, p), f, 1, n_h, n_w)
        assert np.allclose(dw, (cols.T @ dz.reshape(-1, k)).reshape(w.shape))


def test_gradients_from_dz_columns_serve_stride_1_at_least_same_size_outputs_only():
    assert [p for p in range(6) if kernels.grads_from_dz_columns_pay(5, 1, p)] == [2, 3, 4]
    assert [p for p in range(4) if kernels.grads_from_dz_columns_pay(2, 1, p)] == [1]
    assert not kernels.grads_from_dz_columns_pay(3, 2, 1)


def test_column_sums_and_chunks(rng):
    matrix = rng.standard_normal((1000, 6))
    assert np.allclose(kernels.column_sums(matrix), matrix.sum(axis=0))
    assert kernels.batch_chunks(10, 1 << 20, limit=3 << 20) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert kernels.batch_chunks(5, 10 << 30) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]


@pytest.mark.parametrize("rows, columns", [(5000, 25), (2048, 9), (7, 3), (4100, 40)])
def test_weight_gradient_in_row_blocks_equals_one_product_and_stacks_add_up(rows, columns):
    rng = np.random.default_rng(0)
    cols, dz = rng.standard_normal((rows, columns)), rng.standard_normal((rows, 6))
    assert np.allclose(kernels.weight_gradient(cols, dz), cols.T @ dz, rtol=1e-12, atol=1e-10)
    thin = np.ascontiguousarray(cols.T).T  # the column-major layout im2col gives thin inputs
    assert np.allclose(kernels.weight_gradient(thin, dz), cols.T @ dz, rtol=1e-12, atol=1e-10)
    stack, dz_stack = rng.standard_normal((3, rows, columns)), rng.standard_normal((3, rows, 6))
    expected = sum(block.T @ part for block, part in zip(stack, dz_stack))
    assert np.allclose(kernels.weight_gradient(stack, dz_stack), expected, rtol=1e-12, atol=1e-10)
    thin_stack = np.ascontiguousarray(stack.transpose(0, 2, 1)).transpose(0, 2, 1)
    assert np.allclose(kernels.weight_gradient(thin_stack, dz_stack), expected, rtol=1e-12, atol=1e-10)
