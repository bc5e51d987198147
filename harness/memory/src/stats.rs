//! A robust straight line through noisy points: the Theil–Sen slope with Sen's confidence
//! interval, and the scatter of the points around it.

/// The two-sided 95% quantile of the standard normal distribution.
const Z_95: f64 = 1.959_964;

/// Scales a median absolute deviation to a standard deviation for normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;

/// A fitted line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fit {
    /// The median of the pairwise slopes.
    pub slope: f64,
    /// The 95% confidence interval of the slope.
    pub lo: f64,
    pub hi: f64,
    /// The robust standard deviation of the points around the line (1.4826 × MAD).
    pub scatter: f64,
}

/// Fit `(x, y)` points with distinct `x`; `None` with fewer than three.
///
/// The interval is Sen's (1968): under no trend, Kendall's S is about normal with variance
/// `n(n−1)(2n+5)/18` less a term per group of tied `y` (a slab staircase has many), so the
/// `(N − C)/2`-th and `(N + C)/2 + 1`-th of the `N` sorted pairwise slopes, `C = z·√var`, bound
/// the slope with 95% confidence. It needs no assumption about the noise's distribution, which
/// here is page-sized steps, a few outliers and RCU frees that land a cycle late.
pub(crate) fn fit(points: &[(f64, f64)]) -> Option<Fit> {
    if points.len() < 3 {
        return None;
    }
    let mut slopes = Vec::with_capacity(points.len() * (points.len() - 1) / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let slope = median_of_sorted(&slopes);
    let c = Z_95 * kendall_variance(points).max(0.0).sqrt();
    let count = slopes.len() as f64;
    // Ranks are 1-based in Sen's formulation.
    let at_rank = |rank: f64| slopes[(rank.max(1.0) as usize - 1).min(slopes.len() - 1)];
    let lo = at_rank(((count - c) / 2.0).round()).min(slope);
    let hi = at_rank(((count + c) / 2.0).round() + 1.0).max(slope);
    let mut residuals: Vec<f64> = points.iter().map(|(x, y)| y - slope * x).collect();
    residuals.sort_by(f64::total_cmp);
    let intercept = median_of_sorted(&residuals);
    let mut deviations: Vec<f64> = residuals.iter().map(|r| (r - intercept).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    Some(Fit {
        slope,
        lo,
        hi,
        scatter: MAD_TO_SIGMA * median_of_sorted(&deviations),
    })
}

/// The variance of Kendall's S under no trend, corrected for ties in `y`.
fn kendall_variance(points: &[(f64, f64)]) -> f64 {
    let term = |t: f64| t * (t - 1.0) * (2.0 * t + 5.0);
    let mut ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    ys.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut run = 1.0;
    for pair in ys.windows(2) {
        if pair[0] == pair[1] {
            run += 1.0;
        } else {
            ties += term(run);
            run = 1.0;
        }
    }
    ties += term(run);
    (term(points.len() as f64) - ties) / 18.0
}

fn median_of_sorted(values: &[f64]) -> f64 {
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitmix(seed: u64) -> u64 {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn line(n: usize, slope: f64, noise: impl Fn(usize) -> f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| (i as f64, 1e6 + slope * i as f64 + noise(i)))
            .collect()
    }

    #[test]
    fn an_exact_line_has_a_zero_width_interval() {
        let fit = fit(&line(20, 300.0, |_| 0.0)).unwrap();
        assert_eq!(
            (fit.slope, fit.lo, fit.hi, fit.scatter),
            (300.0, 300.0, 300.0, 0.0)
        );
    }

    #[test]
    fn the_interval_covers_the_slope_and_narrows_with_more_points() {
        // A fixed pseudo-random ±4 KiB (periodic noise would give many exactly-true slopes).
        let noise = |i: usize| (splitmix(i as u64) % 8193) as f64 - 4096.0;
        let short = fit(&line(12, 100.0, noise)).unwrap();
        let long = fit(&line(120, 100.0, noise)).unwrap();
        assert!(short.lo < 100.0 && 100.0 < short.hi, "{short:?}");
        assert!(long.lo < 100.0 && 100.0 < long.hi, "{long:?}");
        assert!(long.hi - long.lo < (short.hi - short.lo) / 10.0);
        assert!(long.scatter > 1000.0 && long.scatter < 4096.0, "{long:?}");
    }

    #[test]
    fn one_wild_point_moves_neither_slope_nor_scatter_much() {
        let mut points = line(30, 0.0, |i| if i % 2 == 0 { 1024.0 } else { 0.0 });
        points[15].1 += 50e6;
        let fit = fit(&points).unwrap();
        assert!(fit.slope.abs() < 100.0 && fit.scatter <= 1600.0, "{fit:?}");
    }

    #[test]
    fn too_few_or_same_x_points_give_no_fit() {
        assert_eq!(fit(&[(0.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(fit(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
    }

    #[test]
    fn ties_shrink_the_variance() {
        let distinct = line(10, 1.0, |_| 0.0);
        let flat = line(10, 0.0, |_| 0.0);
        assert!(kendall_variance(&flat) < kendall_variance(&distinct));
        assert_eq!(kendall_variance(&flat), 0.0);
    }
}
