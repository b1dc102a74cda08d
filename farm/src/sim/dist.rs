//! Distributions of durations, drawn from the core's SplitMix64.

use std::fmt;

use sturdy_core::rng::SplitMix64;

use super::engine::unit;

/// A distribution of a duration, in milliseconds.
///
/// Text form ([`Dist::parse`]): `const:10s`, `uniform:1s,5s`, `exp:30s` (mean),
/// `lognormal:60s,0.5` (median, sigma of the underlying normal).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    /// Always this many milliseconds.
    Const(f64),
    /// Uniform between the two bounds (ms).
    Uniform(f64, f64),
    /// Exponential with this mean (ms).
    Exp(f64),
    /// Lognormal: median (ms) and sigma.
    LogNormal(f64, f64),
}

/// Why a distribution's text is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistError(pub String);

impl fmt::Display for DistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DistError {}

/// Parses a duration: `250ms`, `10s`, `5m`, `2h`, or a number of seconds (`1.5`).
///
/// # Errors
/// When the number is not finite and non-negative, or the unit is unknown.
pub fn parse_duration_ms(text: &str) -> Result<f64, DistError> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (t, 1000.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * mult),
        _ => Err(DistError(format!(
            "{text:?} is not a duration (a number >= 0 with ms, s, m or h)"
        ))),
    }
}

impl Dist {
    /// Parses the text form (see the type's docs).
    ///
    /// # Errors
    /// A [`DistError`] naming the rule that was broken.
    pub fn parse(text: &str) -> Result<Self, DistError> {
        let (kind, args) = text.split_once(':').unwrap_or(("const", text));
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let want = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(DistError(format!(
                    "{text:?}: {kind} takes {n} value(s), separated by commas"
                )))
            }
        };
        match kind {
            "const" => {
                want(1)?;
                Ok(Self::Const(parse_duration_ms(args[0])?))
            }
            "uniform" => {
                want(2)?;
                let (lo, hi) = (parse_duration_ms(args[0])?, parse_duration_ms(args[1])?);
                if lo > hi {
                    return Err(DistError(format!("{text:?}: uniform needs low <= high")));
                }
                Ok(Self::Uniform(lo, hi))
            }
            "exp" => {
                want(1)?;
                Ok(Self::Exp(parse_duration_ms(args[0])?))
            }
            "lognormal" => {
                want(2)?;
                let median = parse_duration_ms(args[0])?;
                match args[1].parse::<f64>() {
                    Ok(s) if s.is_finite() && (0.0..=5.0).contains(&s) => {
                        Ok(Self::LogNormal(median, s))
                    }
                    _ => Err(DistError(format!(
                        "{text:?}: lognormal's sigma must be a number in 0..=5"
                    ))),
                }
            }
            _ => Err(DistError(format!(
                "{text:?}: unknown distribution (const, uniform, exp, lognormal)"
            ))),
        }
    }

    /// The mean, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        match *self {
            Self::Const(v) | Self::Exp(v) => v,
            Self::Uniform(a, b) => (a + b) / 2.0,
            Self::LogNormal(m, s) => m * (s * s / 2.0).exp(),
        }
    }

    /// One draw, in whole milliseconds.
    pub fn sample_ms(&self, rng: &mut SplitMix64) -> u64 {
        let v = match *self {
            Self::Const(v) => v,
            Self::Uniform(a, b) => a + (b - a) * unit(rng),
            Self::Exp(mean) => -mean * (1.0 - unit(rng)).ln(),
            Self::LogNormal(median, sigma) => {
                // Box-Muller.
                let u1 = 1.0 - unit(rng);
                let u2 = unit(rng);
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median * (sigma * z).exp()
            }
        };
        v.round().clamp(0.0, 1e15) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            Dist::parse("lognormal:60s,0.5").unwrap(),
            Dist::LogNormal(60_000.0, 0.5)
        );
        assert_eq!(Dist::parse("10ms").unwrap(), Dist::Const(10.0));
        assert_eq!(
            Dist::parse("uniform:1s,2m").unwrap(),
            Dist::Uniform(1000.0, 120_000.0)
        );
        assert!(
            Dist::parse("lognormal:60s")
                .unwrap_err()
                .0
                .contains("2 value")
        );
        assert!(Dist::parse("gamma:1s").unwrap_err().0.contains("unknown"));
        assert!(
            Dist::parse("uniform:5s,1s")
                .unwrap_err()
                .0
                .contains("low <= high")
        );
        assert!(Dist::parse("exp:-1s").is_err());
    }

    #[test]
    fn lognormal_median_is_near_the_given_one() {
        let d = Dist::LogNormal(60_000.0, 0.5);
        let mut rng = SplitMix64::new(7);
        let mut v: Vec<u64> = (0..10_001).map(|_| d.sample_ms(&mut rng)).collect();
        v.sort_unstable();
        let median = v[5000];
        assert!((57_000..63_000).contains(&median), "median {median}");
    }
}
