"""Weight sharing and low-rank factorization: #7's targets per table."""

from __future__ import annotations

from pathlib import Path

from reporting import best_drop_speedup, read_note, with_prefix


HERE = Path(__file__).resolve().parent


SHARING_CYCLE_NOTE = read_note(HERE, "sharing_cycle")


def summary(payloads: list[dict]) -> list[str]:
    """The #7 targets, per table: groups of 2 (<= 2 points, encoder halved); low-rank 50% (<= 1.5, bs32 speedup)."""
    lines = ["Against #7's targets (sharing in groups of 2 halves the encoder with <= 2 points drop; low-rank at 50% "
             "with <= 1.5 points drop and a batch-32 speedup), per table below, fine-tuned rows:", "",
             "| table | teacher | groups of 2 | drop | encoder params kept | best low-rank 50% | drop | speedup bs32 |",
             "|---" * 8 + "|"]
    count = 0
    for payload in payloads:
        rows = payload["rows"]
        teacher = rows[0]
        fine_tuned = [r for r in rows if r["id"].endswith("-fine-tune") and not r["id"].endswith("-no-fine-tune")]
        shared_rows = with_prefix(fine_tuned, "shared-groups-of-2")
        shared = max(shared_rows, key=lambda r: r["score"]) if shared_rows else None
        lowrank = with_prefix(fine_tuned, "low-rank-50")
        if not (shared or lowrank):
            continue
        count += 1
        recipe = f"{payload['task']}, {payload['finetune_steps']} steps, lr {payload['finetune_lr']}"
        if payload.get("finetune_distillation"):
            recipe += " + KD" + (" with hidden states" if payload.get("finetune_hidden_weight") else "")
        cells = [recipe, f"{100 * teacher['score']:.2f}"]
        if shared:
            init = shared["name"].removeprefix("shared, groups of 2").removesuffix(" + fine-tune").strip(", ")
            cells += [f"{100 * shared['score']:.2f}" + (f" ({init})" if init else ""),
                      f"{100 * (teacher['score'] - shared['score']):.2f}",
                      f"{shared['encoder_params'] / teacher['encoder_params']:.0%}"]
        else:
            cells += ["", "", ""]
        cells += best_drop_speedup(lowrank, teacher, "speedup_bs32", suffix=" + fine-tune")
        lines.append("| " + " | ".join(cells) + " |")
    if not count:
        return []
    return lines + ["", "MRPC scores are F1 (\"always paraphrase\" scores 81.22). \"Best\" is picked on the dev set it "
                    "is scored on. \"Activation-aware\" low-rank truncates the SVD of W S (S S^T: the layer's input "
                    "second moment on 32 train batches), which fits each layer's outputs instead of its weights; "
                    "\"RegMean init\" fits each shared linear to both members' outputs the same way. Both need "
                    "`compress(..., dataloader=...)`. Groups of 2 keep 3 layers' worth of unique encoder weights; on SST-2 "
                    "the shared model gains with fine-tuning steps (RegMean init + KD: 80.85 at 400 steps, 82.34 at "
                    "1000), past the 3-layer models of the Theseus section (81.5 / 81.9), but is still 4.1 points under "
                    "the teacher. \"Own biases and LayerNorms\" (`linear_weights_only=True`) ties only the linears' "
                    "weight matrices, so each layer keeps ~5k parameters of its own (encoder 50.1% instead of 50.0%); "
                    "at 1000 steps it scored 81.77 against 82.34, a difference the paired test below does not "
                    "separate from noise: that cheap per-layer capacity is not what the shared model lacks. On MRPC with "
                    "the budget at which activation-aware low-rank 50% keeps 84.68 (240 steps + KD), groups of 2 "
                    "(RegMean init) reach F1 81.21 / accuracy 71.08 against the teacher's 85.81 / 78.92.", "",
                    SHARING_CYCLE_NOTE, ""]
