"""The ``hf`` LLM: random init from a config (offline), a pretrained folder whose tokenizer lacks the VLM's special
tokens, and clear errors for weights that are not on disk."""

from __future__ import annotations

import pytest
import torch

from harness.models.llm.hf_causal import HFCausalCfg, build_hf_causal
from harness.models.llm.tokenizer import EOC, IMAGE
from tests.test_data_and_vlm import world  # noqa: F401  (module-scoped fixture)

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": True}


def test_random_init_is_seeded_and_uses_the_world_tokenizer(world, tmp_path):  # noqa: F811
    a = build_hf_causal(HFCausalCfg(config=TINY, world_vocab=256), world, tmp_path)
    b = build_hf_causal(HFCausalCfg(config=TINY, world_vocab=256), world, tmp_path)
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True))
    assert a.meta["artifact"] == b.meta["artifact"]
    assert a.meta["init"] == "random"  # recorded, so a random LLM never reads as a pretrained one
    assert a.token_id(IMAGE) != a.token_id(EOC)
    assert a.model.get_input_embeddings().weight.shape[0] == len(a.tokenizer)
    bigger = build_hf_causal(HFCausalCfg(config={**TINY, "vocab_size": 1000}, world_vocab=256), world, tmp_path)
    assert bigger.model.get_input_embeddings().weight.shape[0] == 1000  # a larger configured vocabulary is kept


def _plain_checkpoint(folder):
    """A Llama folder whose tokenizer has no <image>, <eoc> or pad token, as hub base models ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator(["a red circle above a blue square"] * 20,
                            trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>", "<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), **TINY)).save_pretrained(folder)
    return len(fast)


def test_pretrained_folder_gets_the_special_tokens_and_grown_embeddings(world, tmp_path):  # noqa: F811
    n = _plain_checkpoint(tmp_path / "ckpt")
    llm = build_hf_causal(HFCausalCfg(model=str(tmp_path / "ckpt")), world, tmp_path)
    assert llm.meta["init"] == f"pretrained:{tmp_path / 'ckpt'}"
    tok = llm.tokenizer
    assert len(tok) == n + 3 and tok.pad_token is not None  # <image>, <eoc>, <pad>
    assert tok(f"a {IMAGE}{IMAGE} circle{EOC}")["input_ids"].count(llm.token_id(IMAGE)) == 2  # never split
    emb = llm.model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok)
    torch.testing.assert_close(emb[n:], emb[:n].mean(0).expand(3, -1))  # new rows at the mean of the old ones
    ids = torch.tensor([[tok.bos_token_id, llm.token_id(IMAGE), llm.token_id(EOC)]])
    assert torch.isfinite(llm.model(input_ids=ids).logits).all()


def test_weights_that_are_not_on_disk_say_so(world, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="model folder '/no/such/llm' does not exist"):
        build_hf_causal(HFCausalCfg(model="/no/such/llm"), world, tmp_path)
    with pytest.raises(RuntimeError, match="could not load weights for 'nobody/no-such-model'.*HF_HUB_OFFLINE=1"):
        build_hf_causal(HFCausalCfg(model="nobody/no-such-model"), world, tmp_path)
    with pytest.raises(ValueError, match="set model .* or config"):
        build_hf_causal(HFCausalCfg(), world, tmp_path)


def test_qwen2_5_0_5b_random_has_qwens_shape():
    """The real-size option builds Qwen2.5-0.5B's architecture (494M parameters, tied head), counted on the meta
    device; every key is given, so none falls back to Qwen2Config's 7B defaults."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from transformers import AutoConfig, AutoModelForCausalLM

    from harness.config.store import register_configs
    from tests.conftest import ROOT

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "sweeps"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="sweep", overrides=["llm=hf_qwen2_5_0_5b_random"]).llm)
    assert cfg.model is None and cfg.init == "random"
    conf = AutoConfig.for_model(cfg.model_type, **cfg.config)
    assert (conf.model_type, conf.hidden_size, conf.intermediate_size, conf.num_hidden_layers) == ("qwen2", 896, 4864, 24)
    assert (conf.num_attention_heads, conf.num_key_value_heads, conf.vocab_size) == (14, 2, 151936)
    assert conf.tie_word_embeddings and conf.max_position_embeddings == 32768
    assert conf.rope_parameters["rope_theta"] == 1e6 and conf.rms_norm_eps == 1e-6
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(conf)
    assert sum(p.numel() for p in model.parameters()) == 494_032_768  # Qwen2.5-0.5B: 0.49B
