"""The report's sections in page order: each module builds one from a run's outputs (see :mod:`report.context`)."""

from __future__ import annotations

from report.context import ReportSection
from report.sections.diff import diff
from report.sections.duplicates import duplicates
from report.sections.economics import economics
from report.sections.filters import filters
from report.sections.histograms import histograms
from report.sections.languages import languages
from report.sections.lid import lid_confusion
from report.sections.measurement import measurement
from report.sections.models import models
from report.sections.overview import overview
from report.sections.plans import plans
from report.sections.routing import routing
from report.sections.token_counts import token_counts
from report.sections.tokenizers import tokenizers
from report.sections.tpsu import tpsu
from report.sections.waterfall import waterfall

SECTIONS: list[ReportSection] = [
    ReportSection("overview", "Corpus overview", "corpus", overview),
    ReportSection("languages", "Language distribution", "corpus", languages),
    ReportSection("tokens", "Token counts", "tokens", token_counts),
    ReportSection("tpsu", "Tokens per semantic unit", "plan", tpsu),
    ReportSection("plans", "Sampling plans", "plan", plans),
    ReportSection("economics", "Language economics", "plan", economics),
    ReportSection("lid", "Language ID on parallel units", "score", lid_confusion),
    ReportSection("filters", "Filters by rule and language", "decide", filters),
    ReportSection("waterfall", "Drop waterfall", "decide", waterfall),
    ReportSection("histograms", "Score histograms", "decide", histograms),
    ReportSection("duplicates", "Duplicate clusters", "dedup", duplicates),
    ReportSection("tokenizers", "Tokenizers and premiums", "tokenizer_eval", tokenizers),
    ReportSection("models", "Models", "source", models),
    ReportSection("routing", "Routing by cost per request", "serve", routing),
    ReportSection("measurement", "Measured savings", "measure", measurement),
    ReportSection("diff", "Changes since the previous run", "corpus", diff),
]
