"""What `auto` picks for real-model layer classes measured in the zoo suite (benchmarks/RESULTS.md,
"Real-model layers")."""
import pytest

from conftest import conv_algo_run

pytest.importorskip("pyconv")


@pytest.mark.parametrize("direction", ["fwd", "bwd_data", "bwd_weight"])
def test_small_plane_one_image_runs_the_gemm(direction):
    # ResNet's 512@7 3x3 at batch 1: im2col; at batch 8 the plane has 32 Winograd tiles
    assert conv_algo_run("auto", direction, (1, 512, 7, 7), (512, 512, 3, 3), 1, 1) == "im2col"
    assert conv_algo_run("auto", direction, (8, 512, 7, 7), (512, 512, 3, 3), 1, 1) == "winograd"
    # few channels keep the register-blocked direct kernels
    assert conv_algo_run("auto", direction, (1, 32, 7, 7), (32, 32, 3, 3), 1, 1) == "direct"


@pytest.mark.parametrize("direction", ["fwd", "bwd_data", "bwd_weight"])
@pytest.mark.parametrize("shape", [(1, 1152, 7, 7, 5), (8, 960, 7, 7, 3), (8, 144, 56, 56, 3)], ids=str)
def test_depthwise_layers_run_direct(shape, direction):
    n, c, h, w, r = shape
    assert conv_algo_run("auto", direction, (n, c, h, w), (c, 1, r, r), 1, r // 2, 1, c) == "direct"
