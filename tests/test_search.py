"""hfcompress search on a tiny model: front, chosen recipe that rebuilds the chosen model, resume, two workers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hfcompress import OnnxSequenceClassifier
from hfcompress.cli import main
from hfcompress.data import sample_data_dir
from hfcompress.search import SearchSpace, candidate_recipe, pareto_front
from hfcompress.pipeline import validate_recipe, load_recipe

from .conftest import save_tiny_bert

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_base(tmp_path, minilm_path):
    return save_tiny_bert(tmp_path / "base", minilm_path, layers=3)


def _search_args(base, out, trials, *more):
    return ["search", "--model", str(base), "--task", "sst2", "--data_dir", sample_data_dir(), "--output", str(out),
            "--max-drop", "60", "--budget-trials", str(trials), "--steps", "2", "--max_train_samples", "96",
            "--max_seq_length", "16", "--batch_size", "16", "--layers", "3", "2", "--int8", "none", "torch",
            "--latency-rounds", "4", *more]


def _load(folder):
    if (folder / "model.onnx").is_file():
        return OnnxSequenceClassifier.from_pretrained(folder)
    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def _logits(model):
    generator = torch.Generator().manual_seed(2)
    inputs = {"input_ids": torch.randint(1000, 5000, (2, 9), generator=generator),
              "attention_mask": torch.ones(2, 9, dtype=torch.long), "token_type_ids": torch.zeros(2, 9, dtype=torch.long)}
    with torch.no_grad():
        return torch.as_tensor(model(**inputs).logits)


def _study(storage):
    import optuna

    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(storage.removeprefix("journal:")))
    return optuna.load_study(study_name="hfcompress-search", storage=storage)


def _counted(storage):
    """Trials that count toward the budget: started ones, not the free int8 forms nor queued first candidates."""
    trials = _study(storage).trials
    return [t for t in trials if t.state.name != "WAITING" and "free_step_of" not in t.user_attrs]


def test_search_writes_front_and_a_recipe_that_rebuilds_the_pick_and_resumes(tmp_path, tiny_base, capsys):
    out = tmp_path / "search"
    assert main(_search_args(tiny_base, out, 4)) == 0
    printed = capsys.readouterr().out
    assert "chose trial" in printed and "| trial | layers | heads cut | FFN cut | retraining-free kept FLOPs |" in printed
    payload = json.loads((out / "front.json").read_text())
    assert payload["front"] and payload["chosen"] and payload["reference"]["judged_on"] in ("labels", "agreement")
    assert all(t["feasible"] for t in payload["front"])
    assert all(t["retimed"] for t in payload["front"])  # the choice is among candidates timed side by side
    assert (out / "results.json").is_file() and (out / "chosen" / "README.md").is_file()
    assert "Chosen by `hfcompress search`" in (out / "chosen" / "README.md").read_text()
    # The chosen recipe rebuilds the chosen model.
    rebuilt = tmp_path / "rebuilt"
    assert main(["compress", "--config", str(out / "chosen.yaml"), "--model", str(tiny_base), "--output", str(rebuilt),
                 "--data_dir", sample_data_dir(), "--no-measure"]) == 0
    torch.testing.assert_close(_logits(_load(rebuilt)), _logits(_load(out / "chosen")), atol=1e-5, rtol=0)
    # Resuming the study: 5 trials in all means one more, the first four kept.
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    assert len(_counted(storage)) == 4
    chosen_before = (out / "chosen.yaml").read_text()
    assert main(_search_args(tiny_base, out, 5, "--explore-only")) == 0
    assert "explored: " in capsys.readouterr().out
    assert len(_counted(storage)) == 5 and (out / "chosen.yaml").read_text() == chosen_before  # no choice made
    # A finished search run again adds no trial; --final-steps trains the pick again at that budget.
    assert main(_search_args(tiny_base, out, 5, "--final-steps", "3")) == 0
    assert len(_counted(storage)) == 5
    chosen = json.loads((out / "front.json").read_text())["chosen"]
    assert "search_score" in chosen and chosen["folder"].startswith(str(out / "final"))
    stages = load_recipe(out / "chosen.yaml")["stages"]
    assert all(s["training"]["max_steps"] == 3 for s in stages if "training" in s)


def test_a_new_search_starts_with_the_cheap_and_known_recipes_and_tries_every_int8_form(tmp_path, tiny_base):
    from hfcompress.search import search

    out = tmp_path / "search"
    space = SearchSpace(layers=[3, 2], int8=["none", "torch", "onnxruntime"], retraining_free=[None, 0.7, 0.5])
    result = search(str(tiny_base), task="sst2", output=out, data_dir=sample_data_dir(), max_drop=60, n_trials=4,
                    steps=2, max_train_samples=96, max_seq_length=16, training={"per_device_train_batch_size": 16},
                    latency_rounds=4,
                    space=space, measure_dev=False)
    started = [t for t in result.trials if "free_step_of" not in t]
    assert [t.get("first_because") for t in started] == ["no training"] * 3 + ["known-good recipe"]
    assert [t["candidate"]["retraining_free"] for t in started] == [0.7, 0.5, None, None]
    assert all(t["candidate"]["int8"] == "onnxruntime" for t in started)
    assert not any(s["stage"] in ("layers", "train") for t in started[:3] for s in t["recipe"]["stages"])
    # Every feasible trial also in its other int8 form, its stages copied rather than run again.
    free = [t for t in result.trials if "free_step_of" in t]
    for trial in started:
        forms = [t for t in free if t["free_step_of"] == trial["trial"]]
        assert [t["candidate"]["int8"] for t in forms] == ["torch"]
        assert {**forms[0]["candidate"], "int8": "onnxruntime"} == trial["candidate"]
    # The 2-layer trial's distilled layer stage is trained once: its int8 form takes it from the trial's folder.
    layered = next(t for t in free if t["candidate"]["layers"] == 2)
    assert layered["reused_stages"]["stages"] == 1 and layered["reused_stages"]["from"] == started[3]["folder"]
    stage = Path(layered["folder"]) / "stages" / "01-truncate2"
    assert (stage / "model.safetensors").is_file()
    torch.testing.assert_close(_logits(_load(stage)), _logits(_load(Path(started[3]["folder"]) / "stages" / stage.name)))


def test_held_out_rows_from_a_file_and_the_agreement_reference(tmp_path, tiny_base, caplog):
    import logging

    from hfcompress.search import search

    rows = (Path(sample_data_dir()) / "dev.tsv").read_text().splitlines()
    unseen = tmp_path / "unseen.tsv"
    unseen.write_text("\n".join(rows[:41]) + "\n")  # header + 40 labelled rows
    common = dict(task="sst2", data_dir=sample_data_dir(), max_drop=60, n_trials=1, steps=2, max_train_samples=96,
                  max_seq_length=16, training={"per_device_train_batch_size": 16}, latency_rounds=4, measure_dev=False,
                  space=SearchSpace(layers=[3], int8=["none", "torch"], retraining_free=[None, 0.5]))
    on_file = search(str(tiny_base), output=tmp_path / "file", eval_file=unseen, **common)
    reference = json.loads((tmp_path / "file" / "front.json").read_text())["reference"]
    assert reference["judged_on"] == "labels" and reference["held_out_rows"] == 40
    assert "never saw" in reference["why"] and on_file.trials
    # A model that scores far higher on its held-out rows than on dev has seen them: judged on agreement (a gap
    # threshold below any real gap stands in for such a model here).
    with caplog.at_level(logging.WARNING, logger="hfcompress"):
        agreed = search(str(tiny_base), output=tmp_path / "agree", seen_gap=-1000.0, **common)
    assert agreed.reference_score == 100.0
    assert "judges the budget on agreement with the original's predictions" in caplog.text
    front = (tmp_path / "agree" / "front.md").read_text()
    assert front.startswith("Scores: agreement with the original's predictions")
    with pytest.raises(ValueError, match="one way"):
        search(str(tiny_base), output=tmp_path / "both", eval_file=unseen, eval_split="validation", **common)


def test_compress_max_drop_fails_with_one_line_and_keeps_the_stages(tmp_path, tiny_base, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("task: sst2\nmax_seq_length: 16\nmax_train_samples: 64\nstages:\n"
                      "  - {stage: compress, method: structured, kept_flops: 0.5}\n")
    out = tmp_path / "out"
    code = main(["compress", "--config", str(recipe), "--model", str(tiny_base), "--output", str(out),
                 "--data_dir", sample_data_dir(), "--max-drop", "-1000"])
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hfcompress compress:")]
    assert code == 2 and len(said) == 1 and "more than max_drop -1000" in said[0]
    assert (out / "stages" / "01-structured").is_dir() and (out / "results.json").is_file()


def test_a_final_model_that_lost_much_gets_a_warning_line(caplog):
    import logging

    from hfcompress.pipeline import warn_if_lost

    with caplog.at_level(logging.WARNING, logger="hfcompress"):
        assert warn_if_lost({"metric": "accuracy", "rows": [{"score": 0.9}, {"score": 0.89}]}) is None
        line = warn_if_lost({"metric": "accuracy", "rows": [{"score": 0.9}, {"score": 0.45}]})
    assert line.startswith("the compressed model keeps 50% of the original's dev accuracy (45.00 vs 90.00)")
    assert line in caplog.text


def _wait_for_a_running_trial(storage, process, seconds=300):
    import time

    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if any(t.state.name == "RUNNING" for t in _study(storage).trials):
                return
        except KeyError:  # the study is not created yet
            pass
        time.sleep(0.2)


def run_two_workers_on_one_study(base, out, storage, capsys, compare_alone=True):
    """Two search workers as separate processes on one storage: each trial evaluated once, in its own folder, by
    one of them, and both took trials (shared by the SQLite, journal and PostgreSQL tests). ``compare_alone``: a
    third worker on the finished study reports the same front (storage-independent, so checked on one storage)."""
    command = [sys.executable, "-m", "hfcompress.cli", *_search_args(base, out, 4, "--storage", storage)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Without the comparison the second worker only explores: the first re-times, chooses and reports (from the
    # trials finished by then). With it both report, and the last to end saw every trial.
    explore = [] if compare_alone else ["--explore-only"]
    # The second worker in a process of its own, the first in this one once the second runs a trial (it starts
    # ten seconds later: its imports).
    second = subprocess.Popen(command + ["--seed", "2", *explore], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for_a_running_trial(storage, second)
        capsys.readouterr()
        assert main([*command[3:], "--seed", "1"]) == 0
        outputs = [(capsys.readouterr().out, ""), second.communicate(timeout=900)]
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, outputs[1][1][-3000:]
    trials = _counted(storage)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and 4 <= len(numbers) <= 5  # a worker may start one as the other ends
    folders = sorted(p.name for p in (out / "trials").iterdir())
    evaluated = [t for t in trials if "duplicate_of" not in t.user_attrs and t.state.name == "COMPLETE"]
    assert {f"trial-{t.number:04d}" for t in evaluated} <= set(folders)  # each evaluated trial has its own folder
    by_worker = [o.count("after trial") for o, _ in outputs]
    assert all(count >= 1 for count in by_worker), by_worker  # both workers took trials
    assert "chose trial" in outputs[0][0] and (out / "chosen" / "config.json").is_file()
    if explore:
        assert "explored:" in outputs[1][0] and "chose trial" not in outputs[1][0]
    if not compare_alone:
        return
    # One worker given the same finished trials (the budget is spent: it only reports) makes the same front and pick.
    alone = out.parent / f"{out.name}-alone"
    assert main([*command[3:], "--seed", "3", "--output", str(alone)]) == 0  # in this process: nothing runs beside it
    shared, solo = (json.loads((folder / "front.json").read_text())["trials"] for folder in (out, alone))
    assert [(r["trial"], r["candidate"], r["score"]) for r in shared] == [(r["trial"], r["candidate"], r["score"])
                                                                          for r in solo]
    # The front as the trials measured it (the report re-times its front side by side, which moves with the noise).
    at_trial = [[{**r, "latency_ratio_bs1": r.get("latency_ratio_bs1_at_trial", r["latency_ratio_bs1"])} for r in rows]
                for rows in (shared, solo)]
    assert [r["trial"] for r in pareto_front(at_trial[0])] == [r["trial"] for r in pareto_front(at_trial[1])]


def kill_a_worker_and_let_another_finish(base, out, storage):
    """A worker killed mid-trial (SIGKILL, no chance to clean up): once its trial missed three heartbeats the next
    worker fails it, queues it again and finishes it in the same trial folder; the budget counts it once (shared
    by the journal and PostgreSQL tests; SQLite's heartbeat is the RDB one PostgreSQL's test covers, and
    test_a_trial_whose_worker_died_is_run_again_in_its_folder checks it in process)."""
    import signal
    import time

    # Only the known-good candidate (2 layers, distilled) comes first, and it trains long enough to be killed in.
    command = [sys.executable, "-m", "hfcompress.cli",
               *_search_args(base, out, 2, "--storage", storage, "--heartbeat-seconds", "1", "--layers", "2",
                             "--retraining-free", "--int8", "none", "--steps", "400")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    doomed = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        running = []
        while not running and doomed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                # Killed once it has its folder (a kill before that leaves nothing to finish; under load it
                # landed there and the retry rightly took a new folder).
                running = [t for t in _study(storage).trials
                           if t.state.name == "RUNNING" and "folder_number" in t.user_attrs]
            except KeyError:  # the study is not created yet
                pass
        assert running, f"no trial started: {doomed.stderr.read()[-3000:] if doomed.poll() is not None else 'timeout'}"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=60)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    killed = next(t for t in _study(storage).trials if t.number == running[0].number)
    assert killed.state.name == "RUNNING", "the trial finished before the kill: give it more steps"
    time.sleep(4)  # three heartbeats missed
    # The survivor needs no long training (the steps only kept the doomed trial running until the kill) nor a choice.
    assert main([*command[3:], "--steps", "8", "--explore-only"]) == 0  # in this process: only the kill needs another
    trials = _study(storage).trials
    assert next(t for t in trials if t.number == killed.number).state.name == "FAIL"
    retry = next(t for t in trials if t.number != killed.number
                 and t.user_attrs.get("folder_number") == killed.user_attrs["folder_number"])
    assert retry.state.name == "COMPLETE" and retry.params == killed.params
    assert sum(t.state.name == "COMPLETE" and "free_step_of" not in t.user_attrs for t in trials) == 2
    assert (out / "trials" / f"trial-{killed.user_attrs['folder_number']:04d}" / "model").is_dir()


@pytest.mark.subprocess
def test_two_workers_share_one_study(tmp_path, tiny_base, capsys):
    run_two_workers_on_one_study(tiny_base, tmp_path / "shared", f"sqlite:///{(tmp_path / 'study.db').resolve()}", capsys)


def test_candidate_recipes_are_valid_pipelines():
    base = {"task": "sst2", "holdout": 0.1, "seed": 1}
    space = SearchSpace()
    for layers in space.layer_choices(6):
        for int8 in ("none", "torch", "onnxruntime"):
            params = {"layers": layers, "strategy": "truncate", "heads": 0.5, "ffn": 0.25, "lowrank": 0.75,
                      "int8": int8, "int8_modules": "attention+ffn_in"}
            validate_recipe(load_recipe(candidate_recipe(params, 6, base, 10)))
    assert space.layer_choices(6) == [6, 4, 3, 2]
    # Retraining-free pruning: a compress stage right after the layer reduction, and no fine-tune of its own.
    params = {"layers": 3, "strategy": "truncate", "heads": 0.0, "ffn": 0.0, "lowrank": None, "int8": "torch",
              "int8_modules": "attention+ffn", "retraining_free": 0.5}
    recipe = candidate_recipe(params, 6, base, 10)
    validate_recipe(load_recipe(recipe))
    assert [s["stage"] for s in recipe["stages"]] == ["layers", "compress", "compress"]
    assert recipe["stages"][1] == {"stage": "compress", "method": "structured", "kept_flops": 0.5}
    assert [s["stage"] for s in candidate_recipe({**params, "layers": 6}, 6, base, 10)["stages"]] == ["compress"] * 2


def test_a_retraining_free_candidate_has_no_fine_tuned_pruning_fractions():
    import optuna

    from hfcompress.search import _suggest

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        params = _suggest(study.ask(), SearchSpace(), 6)
        if params["retraining_free"]:
            assert params["heads"] == params["ffn"] == 0.0
        seen.add(params["retraining_free"])
    assert seen == {None, 0.7, 0.5, 0.4}


def test_pareto_front_keeps_only_undominated_feasible_points():
    rows = [{"trial": 0, "score": 90, "latency_ratio_bs1": 0.5, "feasible": True},
            {"trial": 1, "score": 89, "latency_ratio_bs1": 0.6, "feasible": True},   # dominated by 0
            {"trial": 2, "score": 85, "latency_ratio_bs1": 0.2, "feasible": True},
            {"trial": 3, "score": 99, "latency_ratio_bs1": 0.1, "feasible": False}]  # over budget
    assert [r["trial"] for r in pareto_front(rows)] == [2, 0]


def test_a_trial_whose_worker_died_is_run_again_in_its_folder(tmp_path, tiny_base):
    import time

    import optuna

    from hfcompress.search import STUDY_NAME, _suggest, search

    out = tmp_path / "search"
    out.mkdir()
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    space = SearchSpace(layers=[3, 2], int8=["none"])
    # A worker that started a trial, beat once, and died.
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=["maximize", "minimize"])
    dead = study.ask()
    params = _suggest(dead, space, 3)
    dead.set_user_attr("folder_number", dead.number)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(4)
    search(str(tiny_base), task="sst2", output=out, data_dir=sample_data_dir(), max_drop=60, n_trials=2, steps=2,
           max_train_samples=96, max_seq_length=16, training={"per_device_train_batch_size": 16}, latency_rounds=4,
           space=space,
           heartbeat_seconds=1, measure_dev=False)
    trials = optuna.load_study(study_name=STUDY_NAME, storage=url).trials
    assert trials[0].state.name == "FAIL"
    retry = next(t for t in trials[1:] if t.user_attrs.get("folder_number") == dead.number)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["params_dict"] == params
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2  # the failed attempt is not counted
    assert (out / "trials" / f"trial-{dead.number:04d}" / "model").is_dir()


@pytest.mark.subprocess
def test_two_workers_share_one_journal_file(tmp_path, tiny_base, capsys):
    run_two_workers_on_one_study(tiny_base, tmp_path / "shared", f"journal:{tmp_path / 'study.journal'}", capsys,
                                 compare_alone=False)


@pytest.mark.subprocess
def test_a_killed_worker_trial_is_finished_by_another_journal(tmp_path, tiny_base):
    kill_a_worker_and_let_another_finish(tiny_base, tmp_path / "out", f"journal:{tmp_path / 'study.journal'}")


def test_openvino_is_a_runtime_the_search_can_pick():
    from hfcompress.pipeline import validate_recipe
    from hfcompress.search import SearchSpace, candidate_recipe

    pytest.importorskip("openvino", reason="OpenVINO not installed: pip install 'hfcompress[openvino]'")
    assert "openvino" in SearchSpace().int8
    recipe = candidate_recipe({"layers": 6, "strategy": "truncate", "heads": 0.0, "ffn": 0.0, "lowrank": None,
                               "retraining_free": 0.5, "int8": "openvino", "int8_modules": "attention+ffn"}, 6,
                              {"task": "sst2"}, 100)
    stages = validate_recipe(recipe)
    assert [s.kind for s in stages] == ["compress", "export"] and stages[-1].settings["format"] == "openvino_int8"


def test_a_journal_file_holds_the_study_and_a_second_run_continues_it(tmp_path, tiny_base):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from hfcompress.search import STUDY_NAME, search

    journal = tmp_path / "study.journal"
    common = dict(task="sst2", data_dir=sample_data_dir(), max_drop=60, steps=2, max_train_samples=96,
                  max_seq_length=16, training={"per_device_train_batch_size": 16}, latency_rounds=4, measure_dev=False,
                  storage=f"journal:{journal}", space=SearchSpace(layers=[3], int8=["none", "torch"],
                                                                  retraining_free=[None, 0.5]))
    search(str(tiny_base), output=tmp_path / "one", n_trials=1, **common)
    search(str(tiny_base), output=tmp_path / "one", n_trials=2, **common)
    study = optuna.load_study(study_name=STUDY_NAME, storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))
    started = [t for t in study.trials if t.state.name != "WAITING" and "free_step_of" not in t.user_attrs]
    assert [t.state.name for t in started] == ["COMPLETE", "COMPLETE"] and not (tmp_path / "one" / "study.db").exists()


def test_a_storage_that_stops_answering_ends_the_search_with_one_line_and_no_password(tmp_path, tiny_base, capsys,
                                                                                        monkeypatch):
    import optuna
    import sqlalchemy.exc

    def gone(self, *args, **kwargs):
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(optuna.study.Study, "optimize", gone)
    storage = f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    code = main(_search_args(tiny_base, tmp_path / "out", 2, "--storage", storage))
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hfcompress search:")]
    assert code == 2 and len(said) == 1
    assert "stopped answering (server closed the connection unexpectedly)" in said[0] and "run the same command" in said[0]
    from hfcompress.search import _shown_storage

    class Fake:
        class _storage:
            url = "postgresql://me:s3cret@db/hf"
    assert "s3cret" not in _shown_storage(Fake()) and "***" in _shown_storage(Fake())
