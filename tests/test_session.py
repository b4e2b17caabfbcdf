"""Session options follow the settings: threads, optimisation level, arena, spinning."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from app.inference.session import session_options


@pytest.mark.parametrize(("arena", "spinning"), [(False, False), (True, True)])
def test_session_options(arena: bool, spinning: bool) -> None:
    options = session_options(3, "basic", arena=arena, spinning=spinning)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.enable_cpu_mem_arena is arena
    expected = "1" if spinning else "0"
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
