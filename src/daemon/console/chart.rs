//! Charts as inline SVG, rendered on the server from per-minute counts: one or more series over
//! evenly spaced buckets, drawn as lines over a light grid, with the largest value and the time
//! span as labels and a text alternative (`<title>`, `aria-label`). No script: the SVG is part
//! of the page, styled by the console's CSS (`svg.chart`). An empty series (nothing counted) is
//! drawn as an empty chart that says so.

use maud::{Markup, html};

use crate::state::MINUTE_MS;

/// The drawing's size in SVG units (it scales with the page).
const WIDTH: u32 = 600;
const HEIGHT: u32 = 120;
/// Space on the left for the value labels and at the bottom for the time labels.
const LEFT: u32 = 36;
const BOTTOM: u32 = 16;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Its name, shown in the legend.
    pub name: &'a str,
    /// The CSS class of its line (`s1`, `s2`, `s3`: the console's palette).
    pub class: &'static str,
    /// One value per bucket, oldest first.
    pub values: Vec<u64>,
}

/// A chart titled `title` of `series` (all the same length), the first bucket `span` before
/// now (`span`: e.g. "24 h ago").
pub fn chart(title: &str, span: &str, series: &[Series<'_>]) -> Markup {
    let buckets = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0);
    let totals: Vec<(&str, u64)> = series
        .iter()
        .map(|s| {
            (
                s.name,
                s.values.iter().fold(0u64, |a, v| a.saturating_add(*v)),
            )
        })
        .collect();
    let summary = totals
        .iter()
        .map(|(name, total)| format!("{name}: {total} in all"))
        .collect::<Vec<_>>()
        .join(", ");
    let label = format!("{title}, {span} to now. {summary}; at most {max} in one bucket.");
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - BOTTOM;
    let x = |i: usize| -> f64 {
        if buckets <= 1 {
            f64::from(LEFT)
        } else {
            f64::from(LEFT) + (i as f64) * f64::from(plot_w) / ((buckets - 1) as f64)
        }
    };
    let y = |v: u64| -> f64 {
        if max == 0 {
            f64::from(plot_h)
        } else {
            f64::from(plot_h) - (v as f64) * f64::from(plot_h - 4) / (max as f64)
        }
    };
    html! {
        figure.chart-figure {
            figcaption { (title) }
            svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label)
                preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg" {
                title { (label) }
                line.grid x1=(LEFT) y1="4" x2=(WIDTH) y2="4" {}
                line.grid x1=(LEFT) y1=(plot_h / 2 + 2) x2=(WIDTH) y2=(plot_h / 2 + 2) {}
                line.axis x1=(LEFT) y1=(plot_h) x2=(WIDTH) y2=(plot_h) {}
                text.label x=(LEFT - 4) y="10" text-anchor="end" { (max) }
                text.label x=(LEFT - 4) y=(plot_h) text-anchor="end" { "0" }
                text.label x=(LEFT) y=(HEIGHT - 2) { (span) }
                text.label x=(WIDTH) y=(HEIGHT - 2) text-anchor="end" { "now" }
                @if max == 0 {
                    text.empty x=(LEFT + plot_w / 2) y=(plot_h / 2) text-anchor="middle" {
                        "Nothing counted in this period"
                    }
                } @else {
                    @for s in series {
                        path class=(format!("line {}", s.class)) d=(path(&s.values, &x, &y)) {}
                    }
                }
            }
            @if series.len() > 1 || max > 0 {
                ul.legend {
                    @for (s, (_, total)) in series.iter().zip(&totals) {
                        li { span class=(format!("swatch {}", s.class)) aria-hidden="true" {} (s.name) " (" (total) ")" }
                    }
                }
            }
        }
    }
}

fn path(values: &[u64], x: &dyn Fn(usize) -> f64, y: &dyn Fn(u64) -> f64) -> String {
    let mut d = String::with_capacity(values.len() * 12);
    for (i, v) in values.iter().enumerate() {
        let cmd = if i == 0 { 'M' } else { 'L' };
        d.push_str(&format!("{cmd}{:.1} {:.1}", x(i), y(*v)));
    }
    d
}

/// Minutes in a day's series.
pub const DAY_MINUTES: usize = 24 * 60;

/// The number of the first minute of the day's series ending with the minute of `now_ms`.
pub fn day_first(now_ms: u64) -> u64 {
    (now_ms / MINUTE_MS).saturating_sub(DAY_MINUTES as u64 - 1)
}

/// The index in the day's series starting at minute `first` of the minute starting at
/// `minute_ms`; `None` outside the day.
pub fn day_index(minute_ms: u64, first: u64) -> Option<usize> {
    (minute_ms / MINUTE_MS)
        .checked_sub(first)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|i| *i < DAY_MINUTES)
}

/// `values` (one per minute, oldest first) summed into buckets of `per` minutes.
pub fn bucket(values: &[u64], per: usize) -> Vec<u64> {
    values
        .chunks(per.max(1))
        .map(|c| c.iter().fold(0u64, |a, v| a.saturating_add(*v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_svg_with_a_text_alternative_and_escaped_names() {
        let svg = chart(
            "Events <script>",
            "24 h ago",
            &[
                Series {
                    name: "accepted\"><img src=x>",
                    class: "s1",
                    values: vec![0, 3, 1, 7],
                },
                Series {
                    name: "refused",
                    class: "s2",
                    values: vec![1, 0, 0, 0],
                },
            ],
        )
        .into_string();
        assert!(svg.contains("<svg class=\"chart\""), "{svg}");
        assert!(!svg.contains("<script>") && svg.contains("Events &lt;script&gt;"));
        assert!(!svg.contains("<img") && svg.contains("accepted&quot;&gt;&lt;img src=x&gt;"));
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.contains("at most 7 in one bucket"));
        assert!(svg.contains("11 in all") && svg.contains("(11)") && svg.contains("(1)"));
        // Zero sits on the axis, the largest value reaches the top, the last bucket the right.
        assert!(svg.contains("d=\"M36.0 104.0L224.0"), "{svg}");
        assert!(svg.contains("L600.0 4.0"), "{svg}");
    }

    #[test]
    fn an_empty_chart_says_so() {
        for values in [vec![], vec![0; 288]] {
            let svg = chart(
                "Actions",
                "24 h ago",
                &[Series {
                    name: "succeeded",
                    class: "s1",
                    values,
                }],
            )
            .into_string();
            assert!(svg.contains("Nothing counted in this period"), "{svg}");
            assert!(!svg.contains("<path"));
            assert!(!svg.contains("NaN") && !svg.contains("inf"));
        }
    }

    #[test]
    fn buckets_sum_minutes() {
        assert_eq!(bucket(&[1, 2, 3, 4, 5], 2), vec![3, 7, 5]);
        assert_eq!(bucket(&[], 5), Vec::<u64>::new());
        assert_eq!(bucket(&[u64::MAX, 1], 2), vec![u64::MAX]);
    }
}
