"""experiments/cli.py: a figure command's mistakes end with one message, before anything trains."""
import pytest

def test_a_figure_command_ends_with_the_message_when_a_dataset_file_is_missing(tmp_path):
    from minigcnc import figure_mnist

    with pytest.raises(SystemExit) as stop:
        figure_mnist.main(["--scale", "paper", "--backend", "numpy", "--data-root", str(tmp_path / "empty"),
                           "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    message = str(stop.value)
    assert "figure_mnist: a dataset file is missing" in message and "--data-root" in message
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "empty") in message


def test_a_figure_command_ends_with_the_message_when_cupy_is_missing(tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    from minigcnc import figure3

    with pytest.raises(SystemExit, match=r"figure3: backend='cupy' needs CuPy.*\.\[gpu\]"):
        figure3.main(["--scale", "tiny", "--backend", "cupy", "--out", str(tmp_path), "--jobs", "1", "--quiet"])
