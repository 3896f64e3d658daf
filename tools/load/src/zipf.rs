//! A Zipf sampler over `0..n`: item k (0-based) is drawn with probability proportional to
//! 1 / (k + 1)^s. Exponent 0 is uniform; around 1 a few items take most of the draws.

use rand::Rng;

pub struct Zipf {
    /// Cumulative probabilities, the last one 1.
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.r#gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Picks an index in `0..n`: Zipf when configured, else uniform.
pub enum Picker {
    Uniform(usize),
    Zipf(Zipf),
}

impl Picker {
    pub fn new(n: usize, zipf: Option<f64>) -> Self {
        match zipf {
            Some(s) => Self::Zipf(Zipf::new(n, s)),
            None => Self::Uniform(n.max(1)),
        }
    }

    pub fn pick(&self) -> usize {
        let mut rng = rand::thread_rng();
        match self {
            Self::Uniform(n) => rng.gen_range(0..*n),
            Self::Zipf(z) => z.sample(&mut rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_the_first_items() {
        let z = Zipf::new(1000, 1.1);
        let mut rng = rand::thread_rng();
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
        let top10: u32 = counts[..10].iter().sum();
        assert!(top10 > 40_000, "top 10 of 1000 take most draws at s=1.1: {top10}");
        let u = Zipf::new(4, 0.0);
        assert!((u.cdf[0] - 0.25).abs() < 1e-9);
    }
}
