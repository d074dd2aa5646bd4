"""`mbench sweep`: the strict sweep schema, grid expansion to exact `mbench run` argv, dry-run,
the local executor on the mini benchmark (resumable, continues past failures) and the Slurm
executor through submitit's in-process debug cluster."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from mbench.cli import main
from mbench.engine.sweep import SlurmOptions, SweepFileError, expand, load_sweep, run_slurm
from mbench.errors import MbenchError

REPO_ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Isolated cache and results; the mini benchmark is generated into the cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MBENCH_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {"cache": cache, "results": tmp_path / "results", "log": tmp_path / "calls.log", "tmp": tmp_path}


def mini_sweep(env, *, extra_model: str = "") -> Path:
    """Two points: hash-embed with ngram 3 and 4 on mini.beir.towns, every encoded item logged."""
    return write(env["tmp"] / "mini.yaml", f"""\
        models:
          - model: hash-embed
            model_args: {{ngram: 3, call_log: {env['log']}}}
          - model: hash-embed
            model_args: {{ngram: 4, call_log: {env['log']}}}
        {extra_model}
        tasks: [mini.beir.towns]
        results_dir: {env['results']}
        cache_dir: {env['cache']}
        device: cpu
        progress: false
        """)


def encoded_count(env) -> int:
    return len(env["log"].read_text().splitlines()) if env["log"].exists() else 0


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path / "s.yaml", """\
        models:
          - model: hash-embed
            modle_args: {dim: 8}
        tasks: [mini.beir.towns]
        """)
    with pytest.raises(SweepFileError) as err:
        load_sweep(path)
    assert str(err.value) == (f"{path}: models.0.modle_args: unknown key (did you mean 'model_args'?); "
                              "allowed keys: model, model_args, name, trust_remote_code")


def test_bad_policy_and_missing_tasks_are_each_reported(tmp_path):
    path = write(tmp_path / "s.yaml", """\
        models: [{model: hash-embed}]
        instruction_policies: [first, random]
        """)
    with pytest.raises(SweepFileError) as err:
        load_sweep(path)
    lines = str(err.value).splitlines()
    assert f"{path}: instruction_policies.1: Input should be 'first', 'seeded' or 'none'" in lines
    assert f"{path}: tasks: Field required" in lines


def test_checkpoint_axis_conflicts_with_a_pinned_checkpoint(tmp_path):
    path = write(tmp_path / "s.yaml", """\
        models: [{model: clip-sf, model_args: {checkpoint: a.pth}}]
        checkpoints: [b.pth]
        tasks: [mbeir]
        """)
    with pytest.raises(SweepFileError, match=r"s\.yaml: .*models\[0\]\.model_args sets 'checkpoint'"):
        load_sweep(path)


def test_unknown_task_fails_before_anything_runs(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", "models: [{model: hash-embed}]\ntasks: [mini.beir.towns, mini.beir.townz]\n")
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr()
    assert f"{path}: tasks[1]: unknown task or group 'mini.beir.townz'" in err.err
    assert err.out == ""


def test_expansion_order_and_exact_argv(tmp_path):
    # 2 models x 2 policies x 1 task; the policy axis is named, so each policy gets its own results root.
    path = write(tmp_path / "s.yaml", """\
        models:
          - model: hash-embed
            model_args: {ngram: 4, dim: 64, uses_instructions: true}
          - model: minilm
            name: small
        tasks: [mini.beir.towns]
        instruction_policies: [none, first]
        results_dir: /r
        batch_size: 16
        """)
    points = expand(load_sweep(path))
    common = ["--tasks", "mini.beir.towns", "--pool", "local", "--instruction-policy"]
    assert [p.argv() for p in points] == [
        ["run", "--model", "hash-embed", "--model-arg", "dim=64", "--model-arg", "ngram=4",
         "--model-arg", "uses_instructions=true", *common, "none", "--results-dir", "/r",
         "--batch-size", "16"],
        ["run", "--model", "hash-embed", "--model-arg", "dim=64", "--model-arg", "ngram=4",
         "--model-arg", "uses_instructions=true", *common, "first", "--results-dir", "/r",
         "--batch-size", "16"],
        ["run", "--model", "minilm", *common, "none", "--results-dir", "/r", "--batch-size", "16"],
        ["run", "--model", "minilm", *common, "first", "--results-dir", "/r", "--batch-size", "16"],
    ]
    assert points[3].label == "small mini.beir.towns local first"


def test_checkpoints_and_seeds_expand_only_where_they_matter(tmp_path):
    # Seeds multiply the seeded policy only: first x 1 + seeded x 2 = 3 per checkpoint.
    path = write(tmp_path / "s.yaml", """\
        models: [{model: clip-sf}]
        checkpoints: [/c/1.pth, /c/2.pth]
        tasks: [mbeir]
        pools: [global]
        instruction_policies: [first, seeded]
        seeds: [7, 8]
        """)
    points = expand(load_sweep(path))
    assert [(p.checkpoint, p.instruction_policy, p.seed) for p in points] == [
        ("/c/1.pth", "first", None), ("/c/1.pth", "seeded", 7), ("/c/1.pth", "seeded", 8),
        ("/c/2.pth", "first", None), ("/c/2.pth", "seeded", 7), ("/c/2.pth", "seeded", 8),
    ]
    assert points[2].argv()[:12] == ["run", "--model", "clip-sf", "--model-arg", "checkpoint=/c/1.pth", "--tasks",
                                     "mbeir", "--pool", "global", "--instruction-policy", "seeded", "--seed"]
    # Every point shares the results root: `mbench run` puts each policy and seed in its own folder.
    assert points[2].argv()[12:] == ["8"]


def test_results_dir_is_passed_through(tmp_path):
    path = write(tmp_path / "s.yaml", "models: [{model: hash-embed}]\ntasks: [mini]\nresults_dir: /r\n")
    [point] = expand(load_sweep(path))
    assert point.argv() == ["run", "--model", "hash-embed", "--tasks", "mini", "--pool", "local",
                            "--instruction-policy", "first", "--results-dir", "/r"]


def test_store_dtype_is_passed_through_as_an_explicit_run_option(tmp_path):
    path = write(tmp_path / "s.yaml", "models: [{model: hash-embed}]\ntasks: [mini]\nstore_dtype: fp16\n")
    [point] = expand(load_sweep(path))
    assert point.argv()[-2:] == ["--store-dtype", "fp16"]


def test_dry_run_prints_one_quoted_command_per_point(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", """\
        models: [{model: hash-embed, model_args: {call_log: /tmp/a b.log}}]
        tasks: [mini.beir.towns, "mini.beir.towns,mini.mbeir.cirr.it2i"]
        """)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines == [
        ("mbench run --model hash-embed --model-arg 'call_log=/tmp/a b.log' --tasks mini.beir.towns --pool local "
         "--instruction-policy first"),
        ("mbench run --model hash-embed --model-arg 'call_log=/tmp/a b.log' --tasks mini.beir.towns,mini.mbeir.cirr.it2i "
         "--pool local --instruction-policy first"),
    ]
    assert shlex.split(lines[0])[5] == "call_log=/tmp/a b.log"
    assert "2 grid point(s)" in out.err and "once its model is built" in out.err


def test_sample_sweep_is_valid():
    points = expand(load_sweep(REPO_ROOT / "sweeps" / "instructions.yaml"))
    assert [(p.instruction_policy, p.seed) for p in points] == [
        ("first", None), ("seeded", 0), ("seeded", 1), ("seeded", 2), ("none", None)]


def test_local_sweep_runs_every_point_and_resumes_without_computing(env, capsys):
    path = mini_sweep(env)
    assert main(["sweep", str(path)]) == 0
    results = sorted(env["results"].glob("hash-embed/*/mini.beir.towns/local/result.json"))
    assert len(results) == 2  # ngram changes the fingerprint: two result directories
    first_pass = encoded_count(env)
    assert first_pass > 0
    capsys.readouterr()
    assert main(["sweep", str(path)]) == 0
    err = capsys.readouterr().err
    assert encoded_count(env) == first_pass  # nothing encoded again
    assert err.count("exists (use --overwrite to recompute)") == 2
    assert "2 of 2 point(s) succeeded" in err


def test_local_sweep_continues_past_a_failing_point(env, capsys):
    # dim=1 makes hash-embed raise MbenchError at build time: that point fails, the one after it runs.
    path = write(env["tmp"] / "fail.yaml", f"""\
        models:
          - model: hash-embed
            model_args: {{dim: 1}}
          - model: hash-embed
            model_args: {{call_log: {env['log']}}}
        tasks: [mini.beir.towns]
        results_dir: {env['results']}
        cache_dir: {env['cache']}
        device: cpu
        progress: false
        """)
    assert main(["sweep", str(path)]) == 1
    err = capsys.readouterr().err
    assert "1 of 2 point(s) succeeded" in err
    assert "[exit code 2] mbench run --model hash-embed --model-arg dim=1" in err
    [result] = env["results"].glob("hash-embed/*/mini.beir.towns/local/result.json")
    assert json.loads(result.read_text())["model"]["dim"] == 256


def test_slurm_executor_without_submitit_says_how_to_install(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    path = mini_sweep(env)
    with pytest.raises(MbenchError, match=r"pip install 'mbench\[cluster\]'"):
        run_slurm(expand(load_sweep(path)), SlurmOptions(), env["tmp"] / "logs")


def test_slurm_debug_cluster_runs_the_job_array(env, capsys):
    pytest.importorskip("submitit")
    path = mini_sweep(env, extra_model="  - {model: hash-embed, model_args: {dim: 1}}")
    points = expand(load_sweep(path))
    assert run_slurm(points, SlurmOptions(gpus_per_node=1, time_min=5), env["tmp"] / "logs", cluster="debug",
                     wait=True) == 1
    out, err = capsys.readouterr()
    # One `job id <TAB> command` line per point, in grid order, printed at submission (the jobs'
    # own summary tables follow, as the debug cluster runs them in this process while waiting).
    job_lines = [line.split("\t") for line in out.splitlines() if "\t" in line]
    assert [command for _, command in job_lines] == [p.command() for p in points]
    assert all(job_id.startswith("DEBUG_") for job_id, _ in job_lines)
    assert "2 of 3 job(s) succeeded" in err and "exited with 2" in err
    assert len(list(env["results"].glob("hash-embed/*/mini.beir.towns/local/result.json"))) == 2


def test_slurm_options_with_the_local_executor_are_an_error(env, capsys):
    path = mini_sweep(env)
    assert main(["sweep", str(path), "--slurm-time", "5"]) == 2
    assert "--slurm-time: only with --executor slurm" in capsys.readouterr().err
    assert not env["results"].exists()
