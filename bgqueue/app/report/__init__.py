"""The HTML batch report (``bgqueue report BATCH_ID --html OUT``): one self-contained file per batch,
drawn from the store alone — journal, phase history, checks, decisions, checkpoints and the
sampler's downsampled points — so it can be written after the servers and samples are gone."""
from bgqueue.app.report.page import render_batch_report, wait_for_metrics, write_batch_report

__all__ = ["render_batch_report", "wait_for_metrics", "write_batch_report"]
