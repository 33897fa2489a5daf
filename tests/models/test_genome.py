"""The genome: canonical (equivalent spellings are equal, with equal hashes), hashes stable across
processes, exact round trips genome ↔ ModelConfig ↔ YAML ↔ one-line form, invalid genomes refused
with their reasons, and — for hybrids drawn at random from the registry — the stack contract."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trevo import testing
from trevo.config import ModelConfig, RunConfig
from trevo.models.genome import Gene, Genome, GenomeError, Part
from trevo.models.layers import exposes_scores
from trevo.models.recipes import recipe_names
from trevo.registry import get, names
from trevo.tasks.base import TaskInfo

LM = TaskInfo(vocab_size=256, head="lm", seq_len=32, causal="required", layout=(32,))
LINES = ["8×d96 [gla,gla,gla,attn+rope] swiglu rmsnorm pre",
         "4×d64 [mamba|channel=none,swa(window=16)+rope] geglu(expand=3.0) layernorm sandwich pos=sinusoidal",
         "4×d32 [attn(output_gate=true,qk_norm=true)+rope,gdn|residual=post] mlp rmsnorm realformer untied"]


def _round_trips(g: Genome) -> None:
    assert Genome.parse(g.line()) == g and Genome.parse(g.line()).line() == g.line()
    cfg = g.to_config()
    assert Genome.from_config(cfg) == g
    assert RunConfig.from_dict(RunConfig(model=cfg).to_dict()).model == cfg  # config ↔ YAML-able dict, exactly
    assert Genome.from_yaml(g.to_yaml()) == g and Genome.from_dict(g.to_dict()).to_dict() == g.to_dict()
    assert Genome.from_yaml(g.to_yaml()).hash == g.hash


@pytest.mark.parametrize("line", LINES)
def test_one_line_forms_round_trip_exactly(line):
    g = Genome.parse(line)
    assert g.line() == line
    _round_trips(g)


@pytest.mark.parametrize("arch", recipe_names())
def test_every_recipe_is_a_genome_that_round_trips(arch):
    cfg = RunConfig().override(["model.d_model=32", "model.n_layers=8", f"model.arch={arch}"]).model
    g = Genome.from_config(cfg)
    assert g.n_layers == 8 and len({gene.mixer.name for gene in g.layers}) > (arch != "hawk")
    _round_trips(g)


def test_equivalent_spellings_are_one_genome_with_one_hash():
    a = Genome.parse("4×d32 [gla,attn+rope] swiglu rmsnorm pre")
    spellings = [
        "4xd32 [gla,softmax_attention+rope] swiglu rmsnorm prenorm",
        "4×d32 [gla(gate_low_rank_dim=16,n_heads=4),attn(n_heads=4)+rope,gla,attn+rope] swiglu(expand=4) rmsnorm pre",
    ]
    for line in spellings:
        assert Genome.parse(line) == a and Genome.parse(line).hash == a.hash
    from_config = Genome.from_config(RunConfig.from_dict({"model": {
        "d_model": 32, "n_layers": 4, "layers": [{"mixer": {"name": "gla", "tau": 16}},
                                                 {"mixer": "softmax_attention", "position": "rope"}]}}).model)
    assert from_config == a
    other = [Genome.parse(line) for line in ("4×d32 [gla,attn] swiglu rmsnorm pre",
                                             "4×d34 [gla,attn+rope] swiglu rmsnorm pre",
                                             "4×d32 [attn+rope,gla] swiglu rmsnorm pre")]
    other.append(a.replace(tie_embeddings=False))
    assert len({a.hash, *(o.hash for o in other)}) == 5


def test_a_pattern_is_the_shortest_whole_repetition():
    g = Genome.parse("6×d32 [gla,gla,gla,attn] swiglu rmsnorm pre")  # 4 does not divide 6: all six shown
    assert [x.mixer.name for x in g.layers] == ["gla"] * 3 + ["softmax_attention"] + ["gla"] * 2
    assert len(g.pattern) == 6 and Genome.parse("6×d32 [gla,gla] swiglu rmsnorm pre").pattern == (g.layers[0],)
    assert g.with_period(1) == Genome.parse("6×d32 [gla] swiglu rmsnorm pre")


def test_hashes_are_the_same_in_other_processes():
    here = [Genome.parse(line).hash for line in LINES]
    code = ("import trevo; from trevo.models.genome import Genome; "
            f"print(' '.join(Genome.parse(l).hash for l in {LINES!r}))")
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.getcwd()}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.split() == here


def test_editing_layers_gives_canonical_genomes():
    g = Genome.parse("4×d32 [gla] swiglu rmsnorm pre")
    layers = list(g.layers)
    layers[3] = layers[3].replace(mixer="softmax_attention", position="rope")
    edited = Genome(tuple(layers), g.d_model)
    assert edited == Genome.parse("4×d32 [gla,gla,gla,attn+rope] swiglu rmsnorm pre")
    assert Gene(mixer={"name": "gla", "gate_low_rank_dim": 16}) == Gene(mixer="gla")  # defaults dropped
    assert Part.of("channel", {"name": "swiglu", "expand": 3}) == Part("swiglu", (("expand", 3.0),))


@pytest.mark.parametrize("line,reason", [
    ("2×d32 [fnet] swiglu rmsnorm pre", "mixer 'fnet' is bidirectional only"),
    ("2×d32 [gla,s2mlp] swiglu rmsnorm pre", "layer 1: mixer 's2mlp' needs a 2-D layout"),
    ("2×d32 [gla+rope] swiglu rmsnorm pre", "mixer 'gla' accepts no relative position"),
    ("2×d32 [gla,attn] swiglu rmsnorm realformer", "residual 'realformer' carries attention scores"),
    ("2×d36 [attn+rope] swiglu rmsnorm pre", "head dimension must be even; got 9"),
    ("2×d30 [gla] swiglu rmsnorm pre", "d_model=30 is not divisible by n_heads=4"),
    ("2×d32 [gla(chunk=4)] swiglu rmsnorm pre", "takes no option 'chunk'"),
])
def test_invalid_genomes_are_refused_with_the_reason(line, reason):
    g = Genome.parse(line)
    problems = g.problems(LM)
    assert any(reason in p for p in problems), problems
    with pytest.raises(GenomeError, match="cannot be built"):
        g.check(LM)


@pytest.mark.parametrize("text,reason", [
    ("[gla] swiglu rmsnorm pre", "not a one-line genome"),
    ("2×d32 [gla] swiglu rmsnorm pre tied", "unknown word 'tied'"),
    ("2×d32 [gla|channnel=mlp] swiglu rmsnorm pre", "sets channel=, norm= or residual="),
    ("2×d32 [gla(chunk_size)] swiglu rmsnorm pre", "options are key=value"),
])
def test_unreadable_one_line_forms_are_one_clear_error(text, reason):
    with pytest.raises(GenomeError, match=reason):
        Genome.parse(text)


def test_a_layers_entry_with_an_unknown_field_is_refused():
    with pytest.raises(GenomeError, match="unknown field 'mixr'"):
        Genome.from_dict({"d_model": 32, "n_layers": 2, "layers": [{"mixr": "gla"}]})


# ------------------------------------------------------------------------------ random hybrids
CAUSAL = [n for n in names("mixer") if get("mixer", n).causal and not get("mixer", n).needs_2d]


@st.composite
def genes(draw):
    mixer = draw(st.sampled_from(CAUSAL))
    entry = get("mixer", mixer)
    position = draw(st.sampled_from(["none", *entry.relative_positions]))
    residuals = [r for r in names("residual") if r != "realformer" or exposes_scores(mixer)]
    return Gene(mixer={"name": mixer, **entry.test_options}, position=position,
                channel=draw(st.sampled_from(names("channel"))), norm=draw(st.sampled_from(names("norm"))),
                residual=draw(st.sampled_from(residuals)))


@st.composite
def genomes(draw):
    pattern = draw(st.lists(genes(), min_size=1, max_size=3))
    depth = draw(st.integers(len(pattern), 4))
    absolute = [n for n in names("position") if get("position", n).applies == "absolute"]
    return Genome.of(pattern, d_model=testing.D, n_layers=depth, position=draw(st.sampled_from(absolute)),
                     tie_embeddings=draw(st.booleans()))


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(genomes())
def test_random_valid_hybrids_keep_the_stack_contract(g):
    assume(not g.problems(testing.stack_info()))
    _round_trips(g)
    testing.check_stack(g.to_config())


def test_the_model_of_a_genome_is_the_model_of_its_config():
    g = Genome.parse("4×d32 [gla,attn+rope] swiglu rmsnorm pre")
    torch.manual_seed(0)
    a = testing.build_stack(g.to_config())
    b = testing.build_stack(ModelConfig(d_model=32, n_layers=4, mixer=g.to_config().mixer,
                                        layers=g.to_config().layers))
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
