"""ONNX image encoders (``embedder=clip`` with an ``.onnx`` file): embeddings against the same network in numpy,
batching and padding, channels, the declaration read from the file, and each refusal as one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, save_model
from sklearn.datasets import load_digits

from plugins.embedders.pretrained import LocalWeights, onnx_session, onnx_signature
from plugins.errors import InputError
from runner.assemble import assemble
from runner.errors import ConfigError
from runner.store import Store
from tests.conftest import compose_config, run_in_process

# onnxruntime sums in another order than numpy's matmul; float32 over at most 48 terms stays well inside this.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
DIM = 5


def weights(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(size, DIM)).astype(np.float32), rng.normal(size=DIM).astype(np.float32)


def numpy_encoder(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """What every encoder built here computes, written independently: tanh(flatten(x) W + b)."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    w, b = weights(flat.shape[1], seed)
    return np.tanh(flat @ w + b)


def encoder(path: Path, shape: list, elem: int = TensorProto.FLOAT, out_rank: int = 2, seed: int = 0,
            extra_input: bool = False) -> Path:
    """An ONNX model file at ``path``: ``tanh(flatten(cast(x)) @ W + b)``, input of ``shape`` (a string: a named
    dynamic axis) and type ``elem``, output of rank ``out_rank``."""
    size = int(np.prod([s for s in shape[1:] if isinstance(s, int)]))
    w, b = weights(size, seed)
    nodes = [helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["projected"]),
             helper.make_node("Add", ["projected", "b"], ["shifted"]),
             helper.make_node("Tanh", ["shifted"], ["embeddings" if out_rank == 2 else "vectors"])]
    output_shape = [shape[0], DIM]
    if out_rank != 2:
        nodes.append(helper.make_node("Unsqueeze", ["vectors", "axis"], ["embeddings"]))
        output_shape.append(1)
    inputs = [helper.make_tensor_value_info("images", elem, shape)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
        nodes.append(helper.make_node("Identity", ["scale"], ["scale_out"]))
    initializers = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                    numpy_helper.from_array(np.array([2], dtype=np.int64), "axis")]
    graph = helper.make_graph(nodes, "encoder", inputs,
                              [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, output_shape)],
                              initializer=initializers)
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def refusal(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        LocalWeights(str(path))
    message = str(caught.value)
    assert message.startswith("embedder.weights_path: ") and str(path) in message and "\n" not in message
    return message


# --- embeddings ---------------------------------------------------------------------------------------------


def test_a_dynamic_batch_encoder_embeds_batch_by_batch_as_numpy_does(tmp_path):
    path = encoder(tmp_path / "clip.onnx", ["batch", 1, 4, 4])
    images = np.random.default_rng(1).random((5, 4, 4)).astype(np.float32)
    embedder = LocalWeights(str(path), batch_size=2)
    assert embedder.format == "onnx"
    out = embedder.fit_transform(images)
    assert out.shape == (5, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(out, numpy_encoder(images[:, None]), **TOLERANCE)
    np.testing.assert_array_equal(out, LocalWeights(str(path), batch_size=2).fit_transform(images))


def test_a_fixed_batch_encoder_gets_padded_batches_and_grayscale_is_repeated_for_three_channels(tmp_path):
    # onnxruntime refuses any batch but 4 here, so a short last batch that was not padded would fail.
    path = encoder(tmp_path / "fixed.onnx", [4, 3, 4, 4])
    images = np.random.default_rng(2).random((7, 4, 4)).astype(np.float32)
    out = LocalWeights(str(path), batch_size=256).fit_transform(images)
    assert out.shape == (7, DIM)
    np.testing.assert_allclose(out, numpy_encoder(np.repeat(images[:, None], 3, axis=1)), **TOLERANCE)
    assert LocalWeights(str(path)).fit_transform(images[:0]).shape[0] == 0


def test_colour_images_go_channels_first_and_a_float64_encoder_gets_float64(tmp_path):
    path = encoder(tmp_path / "colour.onnx", ["n", 3, 2, 2], elem=TensorProto.DOUBLE)
    images = np.random.default_rng(3).random((6, 2, 2, 3)).astype(np.float32)  # (n, H, W, C)
    out = LocalWeights(str(path), batch_size=4).fit_transform(images)
    np.testing.assert_allclose(out, numpy_encoder(np.moveaxis(images, -1, 1)), **TOLERANCE)


def test_the_file_decides_the_format_whatever_its_name(tmp_path):
    path = encoder(tmp_path / "encoder.pt2", ["batch", 1, 2, 2])
    assert LocalWeights(str(path)).format == "onnx"


def test_the_declaration_read_from_the_file_is_what_onnxruntime_reads(tmp_path):
    for name, shape, extra in (("a", ["batch", 3, 8, 8], False), ("b", [2, 1, 4, 4], False),
                               ("c", ["n", 1, "h", "w"], True)):
        path = encoder(tmp_path / f"{name}.onnx", shape, extra_input=extra)
        signature = onnx_signature(str(path))
        session = onnx_session(str(path))
        assert signature.inputs == tuple(i.name for i in session.get_inputs())
        assert signature.shape == tuple(s if isinstance(s, int) else None for s in session.get_inputs()[0].shape)
        assert signature.dtype == "float32" and len(signature.output_shape) == len(session.get_outputs()[0].shape) == 2


def test_an_older_model_listing_its_weights_as_inputs_has_one_input(tmp_path):
    path = encoder(tmp_path / "old.onnx", ["batch", 1, 2, 2])
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    onnx.save_model(model, str(path))
    assert onnx_signature(str(path)).inputs == ("images",)
    images = np.random.default_rng(4).random((3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(LocalWeights(str(path)).fit_transform(images), numpy_encoder(images), **TOLERANCE)


def test_onnxruntime_runs_with_the_runs_threads_one_operator_at_a_time(tmp_path):
    import onnxruntime
    from threadpoolctl import threadpool_limits

    path = encoder(tmp_path / "clip.onnx", ["batch", 1, 2, 2])
    with threadpool_limits(limits=1):
        options = onnx_session(str(path)).get_session_options()
    assert options.intra_op_num_threads == options.inter_op_num_threads == 1
    assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL


# --- refusals, each one line naming embedder.weights_path and the file ----------------------------------------


def test_a_missing_file_is_refused(tmp_path):
    assert "does not exist" in refusal(tmp_path / "clip.onnx")


def test_a_text_file_is_neither_format(tmp_path):
    path = tmp_path / "clip.onnx"
    path.write_text("not a model\n")
    message = refusal(path)
    assert "is not a torch.export program or an ONNX model" in message and "torch.export.save" in message
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert "is not a torch.export program or an ONNX model" in refusal(empty)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_onnx_file_is_refused_when_built(tmp_path, keep):
    whole = encoder(tmp_path / "whole.onnx", ["batch", 1, 4, 4]).read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(whole[: int(len(whole) * keep)])
    assert "is not a torch.export program or an ONNX model (read as ONNX: " in refusal(path)


@pytest.mark.parametrize(
    ("shape", "elem", "out_rank", "extra", "expected"),
    [
        (["batch", 16], TensorProto.FLOAT, 2, False, "takes a rank-2 input (b, 16); an encoder takes a rank-4 batch"),
        (["batch", 1, 4, 4, 1], TensorProto.FLOAT, 2, False, "takes a rank-5 input (b, 1, 4, 4, 1)"),
        (["batch", 1, 4, 4], TensorProto.FLOAT, 3, False, "returns a rank-3 output (b, 5, 1); an encoder returns"),
        (["batch", 2, 4, 4], TensorProto.FLOAT, 2, False, "takes 2 channels (b, 2, 4, 4); an encoder takes 1"),
        (["batch", 4, 4, 4], TensorProto.FLOAT, 2, False, "takes 4 channels"),
        (["batch", 1, 4, 4], TensorProto.INT64, 2, False, "takes int64 input; an encoder takes float images"),
        (["batch", 1, 4, 4], TensorProto.UINT8, 2, False, "takes uint8 input"),
        (["batch", 1, 4, 4], TensorProto.FLOAT, 2, True, "takes 2 inputs (images, scale); an encoder takes one"),
    ],
)
def test_a_model_no_encoder_could_be_is_refused_when_built(tmp_path, shape, elem, out_rank, extra, expected):
    path = encoder(tmp_path / "clip.onnx", shape, elem=elem, out_rank=out_rank, extra_input=extra)
    message = refusal(path)
    assert expected in message and message.endswith("(README: Pretrained embeddings)")


def test_images_of_another_size_are_refused_naming_both_sizes_and_the_key(tmp_path):
    path = encoder(tmp_path / "clip.onnx", ["batch", 1, 4, 4])
    embedder = LocalWeights(str(path))
    for images, given in ((np.zeros((2, 5, 5), np.float32), "(1, 5, 5)"),
                          (np.zeros((2, 4, 4, 3), np.float32), "(3, 4, 4)")):
        with pytest.raises(InputError) as caught:
            embedder.fit_transform(images)
        message = str(caught.value)
        assert message.startswith(f"embedder.weights_path: {path} takes images of shape (b, 1, 4, 4), these are ")
        assert given in message and "project.source.image_size" in message and "\n" not in message


def test_a_model_onnxruntime_cannot_build_is_refused_in_one_line(tmp_path):
    path = encoder(tmp_path / "clip.onnx", ["batch", 1, 2, 2])
    model = onnx.load(str(path))
    model.graph.node[2].op_type = "NoSuchOperator"
    onnx.save_model(model, str(path))
    embedder = LocalWeights(str(path))  # the declaration is fine; the graph is not
    with pytest.raises(InputError) as caught:
        embedder.fit_transform(np.zeros((1, 2, 2), np.float32))
    message = str(caught.value)
    assert message.startswith(f"embedder.weights_path: {path} is an ONNX model onnxruntime cannot load (")
    assert "\n" not in message


# --- a run ----------------------------------------------------------------------------------------------------


def test_a_run_embeds_with_an_onnx_encoder(tmp_path):
    # The digits experiment's acquisition (diverse_margin) needs embeddings. Digits are 8x8 grayscale: a colour
    # encoder with a fixed batch of 64 gets them repeated over three channels, in padded batches.
    path = encoder(tmp_path / "clip.onnx", [64, 3, 8, 8], seed=5)
    run_dir = tmp_path / "run"
    run_in_process(run_dir, "+experiment=digits", "loop.rounds=1", "selection.budget=10", "embedder=clip",
                   f"embedder.weights_path={path}")
    store = Store(run_dir / "state.sqlite")
    try:
        stored = np.array(store.array("embeddings/static"))
    finally:
        store.close()
    images = load_digits().images.astype(np.float32) / 16.0
    np.testing.assert_allclose(stored, numpy_encoder(np.repeat(images[:, None], 3, axis=1), seed=5), **TOLERANCE)
    assert len(list((run_dir / "selected").glob("*.csv"))) == 1


def test_a_run_with_an_encoder_no_image_batch_fits_is_refused_before_anything_is_written(tmp_path):
    path = encoder(tmp_path / "clip.onnx", ["batch", 2, 8, 8])
    with pytest.raises(ConfigError) as caught:
        assemble(compose_config("+experiment=digits", "embedder=clip", f"embedder.weights_path={path}"))
    assert "embedder.weights_path: " in str(caught.value) and "takes 2 channels" in str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
