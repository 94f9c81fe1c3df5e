import pytest

from harness.registry import Registry, UnknownComponentError, check_choice


def test_unknown_name_suggests_and_lists():
    reg = Registry("connector")
    for n in ("avg_pool", "attn_pool", "c_abstractor"):
        reg.register(n)(object())
    with pytest.raises(UnknownComponentError) as err:
        reg.get("avg_pol")
    msg = str(err.value)
    assert "Unknown connector 'avg_pol'" in msg and "Did you mean: avg_pool" in msg
    assert "Available: attn_pool, avg_pool, c_abstractor" in msg


def test_duplicate_registration_fails():
    reg = Registry("thing")
    reg.register("a")(int)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(float)


def test_real_registries_fail_loudly():
    from harness.data import SOURCES
    from harness.models.connectors import CONNECTORS
    from harness.models.encoders import ENCODERS
    from harness.models.llm import LLMS

    for reg, bad in ((CONNECTORS, "minning"), (ENCODERS, "clip_tin"), (LLMS, "llama"), (SOURCES, "captions")):
        with pytest.raises(UnknownComponentError) as err:
            reg.get(bad)
        assert "Available:" in str(err.value) and all(n in str(err.value) for n in reg.names())


def test_check_choice():
    with pytest.raises(ValueError, match="Valid: last, penultimate"):
        check_choice("feature_layer", "lst", ("last", "penultimate"))
