"""Suite files: every validation error, and matrix expansion with include/exclude and overrides."""

import hashlib
import json
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from bench.errors import UserError
from bench.spec import suite as suites
from bench.spec.case import Case


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str, device: str = "cpu", overrides=None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as info:
        suites.expand(suites.load(str(path)), device, overrides)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message.removeprefix(f"{path}: ")


def test_path_with_or_without_extension(tmp_path):
    path = write(tmp_path, "[base]\nworkload = 'mlp'\n")
    assert suites.resolve_path(str(path)) == path
    assert suites.resolve_path(str(path.with_suffix(""))) == path
    with pytest.raises(UserError, match="no such suite file"):
        suites.resolve_path(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[base]\nbatchsize = 64\n",
            "[base] batchsize = 64: unknown key; did you mean 'batch_size'? allowed: "
            "activation_checkpointing, alpha, augment, batch_size, ",
        ),
        (
            "[base]\nbatch_size = '64'\n",
            "[base] batch_size = '64': must be an integer",
        ),
        ("[base]\nbatch_size = 0\n", "[base] batch_size = 0: must be a positive integer"),
        ("[base]\nmin_steps = -5\n", "[base] min_steps = -5: must be a positive integer"),
        ("[base]\nwarmup_steps = -1\n", "[base] warmup_steps = -1: must be an integer >= 0"),
        ("[base]\nbatch_size = true\n", "[base] batch_size = True: must be an integer"),
        (
            "[base]\nworkload = 'resnet'\n",
            "[base] workload = 'resnet': allowed: mlp, gpt",
        ),
        (
            "[matrix]\nprecision = ['fp32', 'fp64']\n",
            "[matrix] precision = 'fp64': allowed: fp32, tf32, bf16, amp-bf16, amp-fp16",
        ),
        (
            "[matrix]\noptimizer = ['adam', 'lion']\n",
            "[matrix] optimizer = 'lion': allowed: sgd, sgd-momentum, adam, adamw, adagrad, "
            "rmsprop, adafactor, muon, lbfgs",
        ),
        (
            "[base]\ncompile = 'max_autotune'\n",
            "[base] compile = 'max_autotune': allowed: eager, default, reduce-overhead, "
            "max-autotune, max-autotune-no-cudagraphs",
        ),
        (
            "[base]\nworkload = 'gpt'\nmodel_size = 'huge'\n",
            "[base] model_size = 'huge': allowed for gpt: tiny, mini, small, base, medium, "
            "large, xl",
        ),
        (
            "[base]\nworkload = 'gpt'\ndata = 'digits'\n",
            "[base] data = 'digits': allowed for gpt: auto, stdlib, docs, text, synthetic",
        ),
        ("[matrix]\ncompile = []\n", "[matrix] compile = []: an axis needs at least one value"),
        ("[matrix]\n", "[matrix] is empty: give at least one axis"),
        (
            "[matrix]\ncompile = 'eager'\n",
            "[matrix] compile = 'eager': a matrix axis is a list of values",
        ),
        (
            "[bases]\nx = 1\n",
            "top level bases = {'x': 1}: unknown key; did you mean 'base'? allowed: base, device, ",
        ),
        (
            "[base]\nmin_steps = 50\nmax_steps = 10\n",
            "[base] max_steps = 10: must be >= min_steps (50)",
        ),
        ("[base]\nci_target = 1.5\n", "[base] ci_target = 1.5: a fraction: 0 < ci_target < 1"),
        ("[base]\ndevice = 'cuda'\n", "[base] device = 'cuda': the device is chosen with bench"),
        (
            "[device.tpu]\nbatch_size = 8\n",
            "[device] tpu = {'batch_size': 8}: unknown device; allowed: cpu, cuda",
        ),
        (
            "[device.cpu]\nbatch_size = -8\n",
            "[device.cpu] batch_size = -8: must be a positive integer",
        ),
        (
            "[matrix]\ncompile = ['eager']\n[[exclude]]\nprecision = 'bf16'\n",
            "[[exclude]] precision = 'bf16': exclude may only name axes (of [matrix], or lists in "
            "[base])",
        ),
        (
            "[matrix]\ncompile = ['eager']\n[[include]]\ncompile = 'default'\nbatch = 2\n",
            "[[include]] batch = 2: unknown key",
        ),
        (
            "[[include]]\nworkload = 'gpt'\nprecision = 'int8'\n",
            "[[include]] precision = 'int8': allowed: fp32, tf32, bf16, amp-bf16, amp-fp16",
        ),
        ("[suite]\nname = ''\n", "[suite] name = '': use letters, digits, '.', '_' and '-'"),
        (
            "[suite]\nname = '../../../tmp/escape'\n",
            "[suite] name = '../../../tmp/escape': use letters, digits, '.', '_' and '-'",
        ),
        ("[suite]\nname = 'a/b'\n", "[suite] name = 'a/b': use letters, digits"),
        ("[suite]\nname = '..'\n", "[suite] name = '..': use letters, digits"),
        ("[suite]\nname = '.hidden'\n", "[suite] name = '.hidden': use letters, digits"),
    ],
)
def test_validation_error_names_section_key_value_and_allowed(tmp_path, text, expected):
    assert error_of(tmp_path, text).startswith(expected)


def test_exclude_may_name_an_axis_given_as_a_list_in_base(tmp_path):
    text = """
    [base]
    workload = "mlp"
    batch_size = [16, 32]
    [matrix]
    precision = ["fp32", "amp-bf16"]
    [[exclude]]
    batch_size = 32
    precision = "amp-bf16"
    """
    path = write(tmp_path, text)
    cases = suites.expand(suites.load(str(path)), "cpu")
    # 2 x 2 combinations less the one excluded.
    assert sorted((c.batch_size, c.precision) for c in cases) == [
        (16, "amp-bf16"),
        (16, "fp32"),
        (32, "fp32"),
    ]


def test_unreadable_toml_is_one_line(tmp_path):
    message = error_of(tmp_path, "[base\nworkload = 'mlp'\n")
    assert message.startswith("not valid TOML: ")


def test_not_utf8_is_an_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe[base]")
    with pytest.raises(UserError, match="cannot read"):
        suites.load(str(path))


def test_set_override_errors():
    with pytest.raises(UserError, match="expected key=value"):
        suites.parse_override("batch_size")
    with pytest.raises(UserError, match="unknown key; did you mean 'batch_size'. allowed: "):
        suites.parse_override("batchsize=3")
    with pytest.raises(UserError, match="--device"):
        suites.parse_override("device=cuda")
    assert suites.parse_override("batch_size=128") == ("batch_size", 128)
    assert suites.parse_override("compile=default") == ("compile", "default")
    assert suites.parse_override("batch_size=[32, 64]") == ("batch_size", [32, 64])
    assert suites.parse_override("lr=3e-4") == ("lr", 3e-4)


def test_set_override_value_is_validated_and_attributed(tmp_path):
    message = error_of(tmp_path, "[base]\nworkload = 'mlp'\n", overrides={"batch_size": -1})
    assert message == "--set batch_size = -1: must be a positive integer"


MATRIX = """
[suite]
name = "study"
[base]
workload = "mlp"
model_size = "tiny"
repeats = 2
[matrix]
compile = ["eager", "default"]
precision = ["fp32", "bf16", "amp-bf16"]
[[exclude]]
compile = "default"
precision = "bf16"
[[include]]
precision = "amp-bf16"
batch_size = 128
[[include]]
compile = "default"
precision = "fp32"
workload = "gpt"
"""


def settings(cases: list[Case], *keys: str) -> list[tuple]:
    return [tuple(getattr(c, k) for k in keys) for c in cases]


def test_matrix_with_exclude_and_include_like_github_actions(tmp_path):
    cases = suites.expand(suites.load(str(write(tmp_path, MATRIX))), "cpu")
    # 2 x 3 = 6 combinations, one excluded (default, bf16) -> 5. The first include contradicts no
    # matrix value of the amp-bf16 combinations, so it extends both with batch 128. The second
    # names compile and precision, which match (default, fp32): that combination's workload
    # becomes gpt, since workload is not a matrix axis.
    assert settings(cases, "compile", "precision", "batch_size", "workload") == [
        ("eager", "fp32", 64, "mlp"),
        ("eager", "bf16", 64, "mlp"),
        ("eager", "amp-bf16", 128, "mlp"),
        ("default", "fp32", 16, "gpt"),
        ("default", "amp-bf16", 128, "mlp"),
    ]
    assert all(c.repeats == 2 and c.device == "cpu" for c in cases)


def test_include_that_extends_nothing_becomes_its_own_case(tmp_path):
    text = "[base]\nmodel_size='tiny'\n[matrix]\ncompile=['eager']\n"
    text += "[[include]]\ncompile='default'\nworkload='gpt'\n"
    cases = suites.expand(suites.load(str(write(tmp_path, text))), "cpu")
    assert settings(cases, "workload", "compile") == [("mlp", "eager"), ("gpt", "default")]


def test_device_overrides_replace_base_and_axes(tmp_path):
    text = """
    [base]
    model_size = "base"
    max_time_s = 30.0
    [matrix]
    batch_size = [64, 1024, 8192]
    [device.cpu]
    max_time_s = 3.0
    [device.cpu.matrix]
    batch_size = [16, 64]
    [[device.cuda.include]]
    batch_size = 8192
    precision = "amp-bf16"
    """
    suite = suites.load(str(write(tmp_path, text)))
    cpu = suites.expand(suite, "cpu")
    assert settings(cpu, "batch_size", "max_time_s", "model_size") == [
        (16, 3.0, "base"),
        (64, 3.0, "base"),
    ]
    cuda = suites.expand(suite, "cuda")
    assert settings(cuda, "batch_size", "max_time_s", "precision", "device") == [
        (64, 30.0, "fp32", "cuda"),
        (1024, 30.0, "fp32", "cuda"),
        (8192, 30.0, "amp-bf16", "cuda"),
    ]


def test_overrides_pin_or_make_axes(tmp_path):
    suite = suites.load(str(write(tmp_path, MATRIX)))
    pinned = suites.expand(suite, "cpu", {"compile": "eager", "repeats": 5})
    assert settings(pinned, "compile", "precision", "repeats") == [
        ("eager", "fp32", 5),
        ("eager", "bf16", 5),
        ("eager", "amp-bf16", 5),
    ]
    axis = suites.expand(suite, "cpu", {"optimizer": ["sgd", "adam"], "compile": "eager"})
    assert len(axis) == 6
    assert {c.optimizer for c in axis} == {"sgd", "adam"}


def test_everything_excluded_is_an_error(tmp_path):
    text = "[matrix]\ncompile = ['eager']\n[[exclude]]\ncompile = 'eager'\n"
    assert error_of(tmp_path, text) == "the matrix expands to no cases (every one is excluded)"


def test_cases_identical_after_normalisation_run_once(tmp_path):
    # seq_len means nothing to the MLP: both values give one and the same mlp case.
    text = "[base]\nmodel_size='tiny'\n[matrix]\nworkload=['mlp','gpt']\nseq_len=[32, 64]\n"
    cases = suites.expand(suites.load(str(write(tmp_path, text))), "cpu")
    assert settings(cases, "workload", "seq_len") == [("mlp", None), ("gpt", 32), ("gpt", 64)]


def test_language_key_on_mlp_only_suite_warns(tmp_path):
    path = write(tmp_path, "[base]\nworkload='mlp'\nseq_len=128\n")
    with pytest.warns(UserWarning, match="seq_len has no effect"):
        suites.expand(suites.load(str(path)), "cpu")


def test_case_id_ignores_run_length_but_not_measured_settings():
    a = Case.from_dict({"workload": "mlp", "repeats": 3, "max_time_s": 5.0})
    b = Case.from_dict({"workload": "mlp", "repeats": 7, "max_time_s": 50.0})
    c = Case.from_dict({"workload": "mlp", "batch_size": 32})
    assert a.id == b.id != c.id
    # Defaults are filled in explicitly, so naming a default gives the same case.
    assert Case.from_dict({"workload": "mlp", "batch_size": 64, "lr": 1e-3}).id == a.id


def test_case_id_hashes_only_settings_that_apply_so_new_keys_keep_old_ids():
    # The tutorial's MLP with every default: the id is the hash of exactly these settings. A key
    # added later that is null (or one process, one node) for this case must leave it unchanged;
    # if this fails, a new key shifted the id of every case measured before it.
    settings = {
        "batch_size": 64,
        "compile": "eager",
        "data": "auto",
        "device": "cpu",
        "loss": "cross-entropy",
        "lr": 0.001,
        "lr_schedule": "constant",
        "model_size": "base",
        "optimizer": "adamw",
        "precision": "fp32",
        "seed": 0,
        "workload": "mlp",
    }
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    assert Case.from_dict({"workload": "mlp"}).id == hashlib.sha256(blob).hexdigest()[:12]
    two_ranks = Case.from_dict({"workload": "mlp", "nproc": 2})
    assert two_ranks.id != Case.from_dict({"workload": "mlp"}).id  # two processes do count


def test_cuda_graph_modes_are_skipped_on_cpu_with_a_reason():
    case = Case.from_dict({"compile": "reduce-overhead", "device": "cpu"})
    assert "CUDA graphs" in case.skip_reason()
    assert Case.from_dict({"compile": "reduce-overhead", "device": "cuda"}).skip_reason() is None
    assert Case.from_dict({"compile": "max-autotune-no-cudagraphs"}).skip_reason() is None


def test_shipped_suites_are_valid_on_both_devices():
    for path in sorted((ROOT / "suites").glob("*.toml")):
        suite = suites.load(str(path))
        for device in ("cpu", "cuda"):
            assert suites.expand(suite, device)


def test_without_matrix_each_include_is_a_case_and_without_either_base_is_one(tmp_path):
    text = "[base]\nmodel_size='tiny'\n[[include]]\nworkload='gpt'\n[[include]]\nbatch_size=8\n"
    cases = suites.expand(suites.load(str(write(tmp_path, text))), "cpu")
    assert settings(cases, "workload", "batch_size") == [("gpt", 16), ("mlp", 8)]
    single = suites.expand(suites.load(str(write(tmp_path, "[base]\nbatch_size=8\n"))), "cpu")
    assert settings(single, "workload", "batch_size") == [("mlp", 8)]


def test_a_list_in_base_is_an_axis(tmp_path):
    text = "[base]\nmodel_size='tiny'\nbatch_size=[32, 64]\n[matrix]\ncompile=['eager']\n"
    cases = suites.expand(suites.load(str(write(tmp_path, text))), "cpu")
    assert settings(cases, "batch_size", "compile") == [(32, "eager"), (64, "eager")]
    # A list in a device table too; an empty one is the usual one-line error.
    text = "[base]\nmodel_size='tiny'\n[device.cpu]\nbatch_size=[8, 16, 'max']\n"
    cases = suites.expand(suites.load(str(write(tmp_path, text))), "cpu")
    assert [c.batch_size for c in cases] == [8, 16, "max"]
    assert error_of(tmp_path, "[base]\nbatch_size=[]\n").startswith(
        "[base] batch_size = []: an axis needs at least one value"
    )


def test_a_key_that_applies_to_no_case_warns(tmp_path):
    path = write(tmp_path, "[base]\nloss='mse'\ngamma=3.0\n")
    with pytest.warns(UserWarning, match="gamma has no effect: it applies to none"):
        cases = suites.expand(suites.load(str(path)), "cpu")
    assert cases[0].gamma is None  # normalised: it changes neither the case nor its id


def test_pinning_drops_include_entries_it_contradicts(tmp_path):
    # The gpt-only include must not leak its size and batch into the pinned mlp cases.
    text = """
    [matrix]
    workload = ["mlp", "gpt"]
    compile = ["eager", "default"]
    [[include]]
    workload = "gpt"
    model_size = "tiny"
    batch_size = 16
    """
    suite = suites.load(str(write(tmp_path, text)))
    cases = suites.expand(suite, "cpu", {"workload": "mlp"})
    assert settings(cases, "workload", "model_size", "batch_size") == [("mlp", "base", 64)] * 2


def test_pinning_a_setting_keeps_the_include_entries_that_set_it(tmp_path):
    # --set min_steps=10 against entries with their own min_steps: the entries still pick their
    # workload's size and batch, and the pinned step count wins over theirs.
    text = """
    [matrix]
    workload = ["mlp", "gpt"]
    [[include]]
    workload = "mlp"
    model_size = "small"
    min_steps = 300
    max_steps = 300
    [[include]]
    workload = "gpt"
    model_size = "tiny"
    batch_size = 8
    min_steps = 100
    max_steps = 100
    """
    suite = suites.load(str(write(tmp_path, text)))
    cases = suites.expand(suite, "cpu", {"min_steps": 10, "max_steps": 10})
    assert settings(cases, "workload", "model_size", "batch_size", "min_steps", "max_steps") == [
        ("mlp", "small", 64, 10, 10),
        ("gpt", "tiny", 8, 10, 10),
    ]


def test_non_finite_numbers_and_missing_text_file_are_errors(tmp_path):
    assert error_of(tmp_path, "[base]\nmax_time_s = nan\n").startswith(
        "[base] max_time_s = nan: must be a finite number"
    )
    assert error_of(tmp_path, "[base]\ntimeout_s = inf\n").startswith(
        "[base] timeout_s = inf: must be a finite number"
    )
    text = "[base]\nworkload = 'gpt'\ndata = 'text'\ndata_path = '/nonexistent/corpus.txt'\n"
    assert error_of(tmp_path, text) == (
        "[base] data_path = '/nonexistent/corpus.txt': no such file (data = 'text' trains on it)"
    )
    with pytest.raises(UserError, match="a directory; give a suite file"):
        suites.resolve_path(str(tmp_path))
