//! Inline SVG charts: line charts of a scenario's memory samples and bar charts of byte counts
//! (a mass probe's growth and its modules). No script, no external asset, every guest-given name
//! (slab caches, vmalloc callers, modules) escaped.

use std::fmt::Write;

use modharness_memory::Series;

use crate::html::escape;
use crate::probe::signed_bytes;
use crate::text::truncate_chars;

const WIDTH: f64 = 520.0;
const PLOT_HEIGHT: f64 = 160.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
/// Room under the plot for the x labels.
const BOTTOM: f64 = 24.0;
const LEGEND_LINE: f64 = 16.0;
/// Lines drawn per chart at most: the report keeps more columns than a chart can tell apart.
const MAX_LINES: usize = 5;
const COLOURS: [&str; MAX_LINES] = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df"];

/// The charts of one scenario's series: the judged total, then the caches and callers that
/// changed most (when any did). Empty when there are fewer than two samples.
pub(crate) fn memory_charts(series: &Series) -> String {
    if series.cycles.len() < 2 {
        return String::new();
    }
    let mut out = line_chart(
        "Judged memory (SUnreclaim + VmallocUsed + Percpu), KiB above the first sample",
        &series.cycles,
        &[("judged total", &series.tracked)],
    );
    let mut sources: Vec<(String, &[u64])> = Series::ranked(&series.slab)
        .into_iter()
        .map(|(name, values)| (format!("slab {name}"), values))
        .chain(
            Series::ranked(&series.vmalloc)
                .into_iter()
                .map(|(name, values)| (format!("vmalloc {name}"), values)),
        )
        .collect();
    sources.sort_by_key(|(_, values)| std::cmp::Reverse(last_minus_first(values).unsigned_abs()));
    sources.truncate(MAX_LINES);
    if !sources.is_empty() {
        let lines: Vec<(&str, &[u64])> = sources
            .iter()
            .map(|(name, values)| (name.as_str(), *values))
            .collect();
        out.push_str(&line_chart(
            "Slab caches and vmalloc callers that changed most, KiB above the first sample",
            &series.cycles,
            &lines,
        ));
    }
    out
}

fn last_minus_first(values: &[u64]) -> i128 {
    let first = values.first().copied().unwrap_or(0);
    values.last().copied().unwrap_or(0) as i128 - first as i128
}

/// One chart: each line is its values minus its first value, in KiB, over `cycles`.
fn line_chart(title: &str, cycles: &[u32], lines: &[(&str, &[u64])]) -> String {
    let deltas: Vec<Vec<f64>> = lines
        .iter()
        .map(|(_, values)| {
            let first = values.first().copied().unwrap_or(0) as f64;
            values
                .iter()
                .map(|&v| (v as f64 - first) / 1024.0)
                .collect()
        })
        .collect();
    let (mut lo, mut hi) = deltas
        .iter()
        .flatten()
        .fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if hi - lo < 1.0 {
        hi = lo + 1.0;
    }
    lo = lo.floor();
    hi = hi.ceil();
    let first_cycle = cycles.iter().copied().min().unwrap_or(0) as f64;
    let last_cycle = (cycles.iter().copied().max().unwrap_or(0) as f64).max(first_cycle + 1.0);
    let plot_width = WIDTH - LEFT - RIGHT;
    let x =
        |cycle: u32| LEFT + (cycle as f64 - first_cycle) / (last_cycle - first_cycle) * plot_width;
    let y = |kib: f64| TOP + (hi - kib) / (hi - lo) * PLOT_HEIGHT;
    let height = TOP + PLOT_HEIGHT + BOTTOM + LEGEND_LINE * lines.len() as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        // HTML5 needs no xmlns on inline SVG, and the page then names no URL at all.
        "<svg class=\"chart\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\">\
         <title>{title}</title>\
         <text x=\"{LEFT}\" y=\"14\" font-size=\"12\">{title}</text>\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_width}\" height=\"{PLOT_HEIGHT}\" \
         fill=\"none\" stroke=\"#ccc\"/>",
        title = escape(title),
    );
    let label = svg_text;
    label(
        &mut svg,
        LEFT - 4.0,
        y(hi) + 4.0,
        "end",
        &format!("{hi:.0} KiB"),
    );
    label(
        &mut svg,
        LEFT - 4.0,
        y(lo) + 4.0,
        "end",
        &format!("{lo:.0} KiB"),
    );
    if lo < 0.0 && hi > 0.0 {
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{zero:.1}\" y2=\"{zero:.1}\" stroke=\"#eee\"/>",
            LEFT + plot_width,
            zero = y(0.0)
        );
    }
    let axis_y = TOP + PLOT_HEIGHT + 14.0;
    label(
        &mut svg,
        LEFT,
        axis_y,
        "start",
        &format!("cycle {first_cycle}"),
    );
    label(
        &mut svg,
        LEFT + plot_width,
        axis_y,
        "end",
        &format!("cycle {last_cycle}"),
    );
    for (index, ((name, _), values)) in lines.iter().zip(&deltas).enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = cycles
            .iter()
            .zip(values)
            .map(|(&cycle, &kib)| format!("{:.1},{:.1}", x(cycle), y(kib)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        let legend_y = TOP + PLOT_HEIGHT + BOTTOM + LEGEND_LINE * index as f64;
        let _ = write!(
            svg,
            "<rect x=\"{LEFT}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>",
            legend_y
        );
        let change = values.last().copied().unwrap_or(0.0);
        label(
            &mut svg,
            LEFT + 14.0,
            legend_y + 9.0,
            "start",
            &format!("{name} ({change:+.1} KiB)"),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Widest a bar's label gets before it is cut (module names run to 55 characters).
const BAR_LABEL_CHARS: usize = 24;
const BAR_LABEL_WIDTH: f64 = 160.0;
/// Room right of the bars for each bar's value.
const BAR_VALUE_WIDTH: f64 = 72.0;
const BAR: f64 = 11.0;
const BAR_GROUP_GAP: f64 = 7.0;
/// One colour per round of a mass probe (ten at most are usual), the line colours first.
const BAR_COLOURS: [&str; 10] = [
    "#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#953800",
    "#57606a", "#4d2d00",
];

/// Horizontal bars of byte counts: one group per row, one bar per series in each (the colour
/// says which, the legend names the series when there are several). Negative values grow left
/// of the zero line; a missing value (no sample to compare) has no bar and reads `-`. Labels
/// and values are text, so the chart reads without hovering.
pub(crate) fn bar_chart(
    title: &str,
    series: &[String],
    rows: &[(String, Vec<Option<i64>>)],
) -> String {
    let per_group = series.len().max(1);
    let (lo, hi) = rows
        .iter()
        .flat_map(|(_, values)| values.iter().flatten())
        .fold((0i64, 0i64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = (hi as f64 - lo as f64).max(1.0);
    let plot_width = WIDTH - BAR_LABEL_WIDTH - BAR_VALUE_WIDTH - RIGHT;
    let x = |bytes: i64| BAR_LABEL_WIDTH + (bytes as f64 - lo as f64) / span * plot_width;
    let group_height = BAR * per_group as f64 + BAR_GROUP_GAP;
    let plot_height = group_height * rows.len() as f64;
    let legend_lines = if series.len() > 1 { series.len() } else { 0 };
    let height = TOP + plot_height + LEGEND_LINE * legend_lines as f64 + 6.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" role=\"img\"><title>{title}</title>\
         <text x=\"4\" y=\"14\" font-size=\"12\">{title}</text>",
        title = escape(title),
    );
    let text = svg_text;
    for (row, (label, values)) in rows.iter().enumerate() {
        let top = TOP + group_height * row as f64;
        let middle = top + BAR * per_group as f64 / 2.0 + 3.5;
        text(
            &mut svg,
            BAR_LABEL_WIDTH - 4.0,
            middle,
            "end",
            &truncate_chars(label, BAR_LABEL_CHARS),
        );
        for (index, &bytes) in values.iter().enumerate() {
            let colour = BAR_COLOURS[index % BAR_COLOURS.len()];
            let bar_top = top + BAR * index as f64;
            if let Some(bytes) = bytes {
                let (left, right) = (x(bytes.min(0)), x(bytes.max(0)));
                let _ = write!(
                    svg,
                    "<rect x=\"{left:.1}\" y=\"{bar_top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>",
                    (right - left).max(0.5),
                    BAR - 1.0,
                );
            }
            let value = bytes.map_or_else(|| "-".to_owned(), signed_bytes);
            text(&mut svg, WIDTH - RIGHT, bar_top + BAR - 2.0, "end", &value);
        }
    }
    let zero = x(0);
    let _ = write!(
        svg,
        "<line x1=\"{zero:.1}\" x2=\"{zero:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#999\"/>",
        TOP + plot_height - BAR_GROUP_GAP / 2.0,
    );
    for (index, name) in series.iter().enumerate().take(legend_lines) {
        let legend_y = TOP + plot_height + LEGEND_LINE * index as f64;
        let _ = write!(
            svg,
            "<rect x=\"{BAR_LABEL_WIDTH}\" y=\"{legend_y:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/>",
            BAR_COLOURS[index % BAR_COLOURS.len()]
        );
        text(
            &mut svg,
            BAR_LABEL_WIDTH + 14.0,
            legend_y + 9.0,
            "start",
            name,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A small `<text>` at (`x`, `y`), anchored `anchor` (`start`, `middle`, `end`), escaped.
fn svg_text(svg: &mut String, x: f64, y: f64, anchor: &str, words: &str) {
    let _ = write!(
        svg,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"10\" text-anchor=\"{anchor}\">{}</text>",
        escape(words)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_single_sample_series_draws_nothing_and_a_flat_line_still_has_a_range() {
        let mut series = Series {
            cycles: vec![0],
            tracked: vec![5],
            ..Series::default()
        };
        assert_eq!(memory_charts(&series), "");
        series.cycles.push(0);
        series.tracked.push(5);
        let svg = memory_charts(&series);
        assert!(svg.contains("1 KiB") && svg.contains("cycle 1"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
