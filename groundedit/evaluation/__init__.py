"""``groundedit eval``: score any editor's outputs on a benchmark.

- ``bench`` — bench items and their readers (our JSONL, SmartEdit Reason-Edit folders, our shards);
- ``metrics`` — EGA, leakage, PSNR / SSIM on the unedited region (pixel metrics, no model);
- ``perceptual`` — LPIPS and CLIP score from local weights only;
- ``judge`` — the VLM editing score ES (1-5) through the chat backends;
- ``scoring`` — one result per item; ``tables`` — per edit type + overall, CSV and printed.
"""

from groundedit.evaluation.bench import READERS, BenchError, BenchItem, read_bench
from groundedit.evaluation.judge import EditJudge, JudgeError, Verdict
from groundedit.evaluation.scoring import METRICS, EvalOptions, ItemResult, evaluate
from groundedit.evaluation.tables import summarize, summary_table, write_items_csv, write_summary_csv

__all__ = [
    "METRICS",
    "READERS",
    "BenchError",
    "BenchItem",
    "EditJudge",
    "EvalOptions",
    "ItemResult",
    "JudgeError",
    "Verdict",
    "evaluate",
    "read_bench",
    "summarize",
    "summary_table",
    "write_items_csv",
    "write_summary_csv",
]
