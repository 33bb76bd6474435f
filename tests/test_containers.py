"""Containers that speak NumPy's ufunc protocol come back as what went in, with their
index, coords or mask, as they do from ``np.maximum``; values against the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import oracle
import relukernels as rk
from strategies import FLOAT_DTYPES, INTEGER_DTYPES, leaks_for

pd = pytest.importorskip("pandas")


@st.composite
def vectors(draw, dtypes=FLOAT_DTYPES + INTEGER_DTYPES):
    dtype = draw(st.sampled_from(dtypes))
    values = draw(hnp.arrays(dtype, draw(st.integers(0, 40)), elements=hnp.from_dtype(dtype)))
    return values, draw(leaks_for(dtype))


@pytest.mark.filterwarnings("ignore:overflow encountered")
@given(vectors())
def test_pandas_series_keeps_index_name_and_dtype(case):
    values, leak = case
    series = pd.Series(values, index=[f"r{i}" for i in range(len(values))], name="activations")
    for function, formula in ((rk.relu, oracle.relu), (rk.relu_dash, oracle.relu_dash)):
        result = function(series, leak)
        assert type(result) is pd.Series and result.name == "activations"
        assert result.index.equals(series.index)
        np.testing.assert_array_equal(result.to_numpy(), formula(values, leak), strict=True)
    y, dy = rk.relu_and_dash(series, leak)
    assert type(y) is type(dy) is pd.Series
    np.testing.assert_array_equal(dy.to_numpy(), oracle.relu_dash(values, leak), strict=True)


def test_pandas_dataframe_with_mixed_columns():
    frame = pd.DataFrame({"a": [-2.0, 3.0], "b": np.array([-4, 5], np.int32)}, index=["x", "y"])
    result = rk.relu(frame, 0.5)
    assert type(result) is pd.DataFrame and list(result.columns) == ["a", "b"]
    assert result.index.equals(frame.index)
    np.testing.assert_array_equal(result["a"], [-1.0, 3.0])
    np.testing.assert_array_equal(result["b"], [-2.0, 5.0])


def test_pandas_float16_stays_float16():
    series = pd.Series(np.array([-3.0, 0.5, 65504], np.float16))
    result = rk.relu(series, 0.1)
    assert result.dtype == np.float16
    np.testing.assert_array_equal(result.to_numpy(), oracle.relu(series.to_numpy(), 0.1), strict=True)


def test_pandas_pipeline():
    """A groupby/transform pipeline, as client code writes it."""
    frame = pd.DataFrame({"group": list("aabb"), "value": [-1.0, 2.0, -3.0, 4.0]})
    result = frame.groupby("group")["value"].transform(lambda v: rk.relu(v, 0.1))
    assert type(result) is pd.Series
    np.testing.assert_allclose(result.to_numpy(), [-0.1, 2.0, -0.3, 4.0])
    assert frame.assign(y=lambda f: rk.relu(f["value"])).y.tolist() == [0.0, 2.0, 0.0, 4.0]


def test_xarray_keeps_dims_and_coords():
    xr = pytest.importorskip("xarray")
    values = np.linspace(-2, 2, 12).reshape(3, 4)
    data = xr.DataArray(values, dims=("time", "unit"), coords={"time": [10, 20, 30]}, name="a")
    for function, formula in ((rk.relu, oracle.relu), (rk.relu_dash, oracle.relu_dash)):
        result = function(data, 0.2)
        assert type(result) is xr.DataArray and result.dims == ("time", "unit")
        assert result.coords["time"].values.tolist() == [10, 20, 30]
        np.testing.assert_array_equal(result.values, formula(values, 0.2), strict=True)


def test_xarray_dataset_goes_variable_by_variable():
    xr = pytest.importorskip("xarray")
    half, small = np.array([-2, 3], np.float16), np.array([-4, 5], np.int8)
    dataset = xr.Dataset({"half": ("t", half), "small": ("t", small)}, coords={"t": [7, 8]})
    for function, formula in ((rk.relu, oracle.relu), (rk.relu_dash, oracle.relu_dash)):
        result = function(dataset, 0.5)
        assert type(result) is xr.Dataset and result.coords["t"].values.tolist() == [7, 8]
        for name, values in (("half", half), ("small", small)):
            np.testing.assert_array_equal(result[name].values, formula(values, 0.5), strict=True)
    with pytest.raises(TypeError, match="variable 'flag' of x"):
        rk.relu(xr.Dataset({"flag": ("t", [True])}))
    with pytest.raises(ValueError, match="variable 'small' of x: leak=1000 does not fit in int8"):
        rk.relu(dataset, 1000)


def test_dask_backed_xarray_stays_lazy():
    xr = pytest.importorskip("xarray")
    da = pytest.importorskip("dask.array")
    values = np.linspace(-2, 2, 120).reshape(12, 10)
    data = xr.DataArray(da.from_array(values, chunks=(4, 5)), dims=("t", "u"))
    y, dy = rk.relu_and_dash(data, 0.3)
    assert isinstance(y.data, da.Array) and isinstance(dy.data, da.Array)
    np.testing.assert_array_equal(y.compute().values, oracle.relu(values, 0.3), strict=True)
    np.testing.assert_array_equal(dy.compute().values, oracle.relu_dash(values, 0.3), strict=True)


def test_masked_array_keeps_its_mask():
    values = np.array([-2.0, 3.0, -1.0, 5.0])
    masked = np.ma.masked_array(values, mask=[False, True, False, False])
    for function, formula in ((rk.relu, oracle.relu), (rk.relu_dash, oracle.relu_dash)):
        result = function(masked, 0.5)
        assert type(result) is np.ma.MaskedArray
        assert result.mask.tolist() == [False, True, False, False]
        np.testing.assert_array_equal(result.compressed(), formula(values, 0.5)[~masked.mask])


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_matrix_and_other_subclasses_keep_their_type():
    class Tagged(np.ndarray):
        pass

    matrix = np.matrix([[-1.0, 2.0]])
    result = rk.relu(matrix, 0.5)
    assert type(result) is np.matrix
    np.testing.assert_array_equal(np.asarray(result), [[-0.5, 2.0]])
    tagged = np.array([-4.0, 1.0]).view(Tagged)
    y, dy = rk.relu_and_dash(tagged, 0.25)
    assert type(y) is type(dy) is Tagged
    np.testing.assert_array_equal(np.asarray(y), [-1.0, 1.0])


def test_container_errors_name_the_argument():
    series = pd.Series([1.0, -1.0])
    with pytest.raises(ValueError, match="leak"):
        rk.relu(series, float("nan"))
    with pytest.raises(TypeError, match="dtype bool"):
        rk.relu(pd.Series([True, False]))
    with pytest.raises(ValueError, match="leak .* shape"):
        rk.relu(series, np.ones(3))


def test_dataframe_is_checked_column_by_column_before_anything_is_computed():
    frame = pd.DataFrame({"half": np.array([-2, 3], np.float16), "small": np.array([-4, 5], np.int8)})
    result = rk.relu(frame, 0.5)
    assert result.dtypes.tolist() == [np.float16, np.float64]  # float16 kept; int8 with 0.5 promotes
    y, dy = rk.relu_and_dash(frame, 2)
    assert y.dtypes.tolist() == dy.dtypes.tolist() == [np.float16, np.int8]
    np.testing.assert_array_equal(y["small"], [-8, 5])
    with pytest.raises(TypeError, match="column 'flag' of x: x has dtype bool"):
        rk.relu(pd.DataFrame({"value": [1.0], "flag": [True]}))
    for call, error in [
        (lambda: rk.relu(frame, 1000), ValueError),  # does not fit int8
        (lambda: rk.relu(frame, np.ones(2)), TypeError),
        (lambda: rk.relu(frame, out=frame), TypeError),
    ]:
        with pytest.raises(error):
            call()


def test_masked_out_errors_write_nothing_and_in_place_reads_first():
    masked = np.ma.masked_array([-2.0, 3.0], mask=[False, True])
    good, bad = np.zeros(2), np.zeros(2, np.int8)
    with pytest.raises(TypeError, match="out\\[1\\]"):
        rk.relu_and_dash(masked, out=(good, bad))
    assert not good.any()
    x = np.ma.masked_array([-2.0, 3.0])
    dy = np.zeros(2)
    rk.relu_and_dash(x, -1.0, out=(x, dy))
    np.testing.assert_array_equal(np.asarray(x), [2.0, 3.0])
    np.testing.assert_array_equal(dy, [-1.0, 1.0])


def test_memmap_runs_the_numpy_kernels(tmp_path):
    values = np.linspace(-1, 1, 10)
    mapped = np.memmap(tmp_path / "x.bin", dtype=np.float64, mode="w+", shape=(10,))
    mapped[:] = values
    result = rk.relu(mapped, 0.5)
    assert type(result) is np.ndarray  # as np.maximum gives
    np.testing.assert_array_equal(result, oracle.relu(values, 0.5), strict=True)


def test_pandas_nullable_dtypes_and_string_columns():
    floats = pd.Series([-1.0, None, 2.0], dtype="Float64")
    result = rk.relu(floats, 0.1)
    assert str(result.dtype) == "Float64" and result.isna().tolist() == [False, True, False]
    assert result[0] == -0.1 and result[2] == 2.0
    integers = rk.relu(pd.Series([-3, None, 2], dtype="Int64"), 2)
    assert str(integers.dtype) == "Int64" and integers[0] == -6
    with pytest.raises(TypeError, match="dtype string"):
        rk.relu(pd.DataFrame({"a": [1.0], "s": pd.Series(["x"], dtype="string")}))
