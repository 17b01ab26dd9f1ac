"""The Prometheus text format as herald.exposition writes it, read back by an
independent strict reader (tests/exposition_parser.py)."""

from __future__ import annotations

import math

import pytest

from herald.exposition import Family, format_value, render
from herald.metrics import DURATION_BUCKETS, Histogram, bucket_index
from tests.exposition_parser import ExpositionError, parse


def test_label_values_and_help_are_escaped_and_read_back_unchanged() -> None:
    """Backslashes, double quotes and newlines in label values and help survive."""
    nasty = 'a\\b"c\nd}e,f="g'
    family = Family("herald_things_total", "counter", 'Help with \\ and\na newline "quoted"')
    family.add(3, kind=nasty, queue="io")
    text = render([family])
    assert "\n" not in text.rstrip("\n").split("\n")[2]  # one line per sample
    assert 'kind="a\\\\b\\"c\\nd}e,f=\\"g"' in text
    parsed = parse(text)["herald_things_total"]
    assert parsed.help == 'Help with \\ and\na newline "quoted"'
    assert parsed.value(kind=nasty, queue="io") == 3


def test_histogram_is_cumulative_with_inf_sum_and_count() -> None:
    """Per-bucket counts become cumulative _bucket lines ending at +Inf = _count."""
    histogram = Histogram()
    for seconds in (0.001, 0.004, 0.3, 0.3, 7.0, 5000.0):
        histogram.buckets[bucket_index(seconds)] += 1
        histogram.sum += seconds
    family = Family("herald_task_duration_seconds", "histogram", "Durations.")
    family.add_histogram(histogram.cumulative(), histogram.sum, queue="io", kind="k")
    parsed = parse(render([family]))["herald_task_duration_seconds"]
    buckets = parsed.buckets(queue="io", kind="k")
    assert [bound for bound, _ in buckets] == [*DURATION_BUCKETS, math.inf]
    by_bound = dict(buckets)
    assert by_bound[0.005] == 2
    assert by_bound[0.25] == 2 and by_bound[0.5] == 4
    assert by_bound[10.0] == 5 and by_bound[3600.0] == 5
    assert by_bound[math.inf] == 6
    assert parsed.labelled("_count") == [({"queue": "io", "kind": "k"}, 6)]
    assert parsed.labelled("_sum")[0][1] == pytest.approx(5007.605)


def test_a_duration_on_a_bound_falls_in_that_bucket() -> None:
    """le means "less than or equal": 1.0 s counts in the le="1.0" bucket."""
    assert bucket_index(1.0) == DURATION_BUCKETS.index(1.0)
    assert bucket_index(0.0) == 0
    assert bucket_index(1e9) == len(DURATION_BUCKETS)


def test_values_are_written_as_prometheus_reads_them() -> None:
    """Integers plainly, floats in full, and the special values by name."""
    assert format_value(3) == "3"
    assert format_value(True) == "1"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"


def test_bad_names_and_histograms_are_refused() -> None:
    """A counter without _total, a bad label name, or a histogram not ending at +Inf."""
    with pytest.raises(ValueError, match="_total"):
        Family("herald_things", "counter", "x")
    with pytest.raises(ValueError, match="metric name"):
        Family("9lives", "gauge", "x")
    family = Family("herald_g", "gauge", "x")
    family.add(1, **{"bad-label": "x"})
    with pytest.raises(ValueError, match="label name"):
        render([family])
    with pytest.raises(ValueError, match=r"\+Inf"):
        Family("herald_h", "histogram", "x").add_histogram([(1.0, 1)], 1.0)


def test_the_reader_refuses_what_the_format_forbids() -> None:
    """The test reader is strict: it would catch a renderer that cut corners."""
    with pytest.raises(ExpositionError, match="no # TYPE"):
        parse("herald_x 1\n")
    with pytest.raises(ExpositionError, match="not cumulative"):
        parse(
            "# TYPE h histogram\n"
            'h_bucket{le="1.0"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1.0\nh_count 1\n'
        )
    with pytest.raises(ExpositionError, match="bad escape"):
        parse('# TYPE g gauge\ng{a="\\t"} 1\n')
