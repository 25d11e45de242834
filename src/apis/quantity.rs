//! Exact arithmetic on resource quantities (`100m`, `1Gi`, `2.5`, `1e3`), for what must add up exactly: quota
//! usage and limit ranges. Values are held in nano-units (the smallest unit a quantity can name), so sums and
//! comparisons never round.
//!
//! Invariants: `parse` accepts what upstream's `resource.ParseQuantity` accepts within ±2^63 units and refuses
//! the rest; `Display` prints upstream's canonical form (binary suffixes for a value parsed from one and a whole
//! number of bytes, otherwise the largest decimal SI suffix that keeps the number whole), and the printed form
//! parses back to the same value.

use std::fmt;

const NANOS: i128 = 1_000_000_000;

/// A quantity, exactly.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantity {
    nanos: i128,
    /// Printed with binary suffixes (`Ki`, `Mi`, ...), as a quantity written with one is.
    binary: bool,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// The largest magnitude accepted, in nano-units: upstream's quantities are bounded near 2^63 units.
const MAX_NANOS: i128 = (i64::MAX as i128) * NANOS;

const DECIMAL_SUFFIXES: [(&str, u32); 10] =
    [("E", 27), ("P", 24), ("T", 21), ("G", 18), ("M", 15), ("k", 12), ("", 9), ("m", 6), ("u", 3), ("n", 0)];
const BINARY_SUFFIXES: [(&str, u32); 6] = [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];

impl Quantity {
    pub const ZERO: Quantity = Quantity { nanos: 0, binary: false };

    /// Whole units (`count/pods` and other counts).
    pub fn units(n: i64) -> Quantity {
        Quantity { nanos: i128::from(n) * NANOS, binary: false }
    }

    /// Parses a quantity; None when upstream would refuse it.
    pub fn parse(s: &str) -> Option<Quantity> {
        let (negative, unsigned) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = unsigned.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, suffix) = unsigned.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // The number as an integer of digits and a power of ten that scales it.
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        let mut exponent10 = -(fraction.len() as i32);
        let mut binary_shift = 0u32;
        let binary = BINARY_SUFFIXES.iter().find(|(name, _)| *name == suffix);
        match (binary, DECIMAL_SUFFIXES.iter().find(|(name, _)| *name == suffix)) {
            (Some((_, shift)), _) => binary_shift = *shift,
            (None, Some((_, nanos_exponent))) => exponent10 += *nanos_exponent as i32 - 9,
            (None, None) => {
                let e = suffix.strip_prefix(['e', 'E'])?;
                let digits = e.trim_start_matches(['+', '-']);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                exponent10 += e.parse::<i32>().ok()?;
            }
        }
        // Nano-units: mantissa × 10^(exponent10 + 9) × 2^binary_shift.
        let mut nanos = mantissa.checked_mul(1i128.checked_shl(binary_shift)?)?;
        let scale = exponent10 + 9;
        if scale >= 0 {
            nanos = nanos.checked_mul(10i128.checked_pow(u32::try_from(scale).ok()?)?)?;
        } else {
            // A fraction finer than a nano-unit rounds up, as upstream rounds it.
            let divisor = 10i128.checked_pow(u32::try_from(-scale).ok()?).unwrap_or(i128::MAX);
            nanos = nanos / divisor + i128::from(nanos % divisor != 0);
        }
        if nanos > MAX_NANOS {
            return None;
        }
        Some(Quantity { nanos: if negative { -nanos } else { nanos }, binary: binary.is_some() })
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The sum, printed as `self` is (upstream's `Add` keeps the receiver's format); saturates at the bound.
    pub fn plus(self, other: Quantity) -> Quantity {
        let nanos = self.nanos.saturating_add(other.nanos).clamp(-MAX_NANOS, MAX_NANOS);
        let binary = if self.is_zero() { other.binary } else { self.binary };
        Quantity { nanos, binary }
    }

    /// `self / other` as a float, for limit-to-request ratios; None when `other` is zero.
    pub fn ratio(self, other: Quantity) -> Option<f64> {
        (other.nanos != 0).then(|| self.nanos as f64 / other.nanos as f64)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.abs();
        if self.binary && magnitude % NANOS == 0 {
            let bytes = magnitude / NANOS;
            for (suffix, shift) in BINARY_SUFFIXES {
                if bytes % (1i128 << shift) == 0 {
                    return write!(f, "{sign}{}{suffix}", bytes >> shift);
                }
            }
            if bytes < 1024 {
                return write!(f, "{sign}{bytes}");
            }
        }
        for (suffix, exponent) in DECIMAL_SUFFIXES {
            let unit = 10i128.pow(exponent);
            if magnitude % unit == 0 {
                return write!(f, "{sign}{}{suffix}", magnitude / unit);
            }
        }
        unreachable!("every whole number of nano-units is a multiple of 10^0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn ways_of_writing_one_amount_are_equal() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
        assert!(q("100m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("0.0000000001"), q("1n"));
    }

    #[test]
    fn canonical_forms_match_upstream() {
        for (written, canonical) in [
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("2048Mi", "2Gi"),
            ("1536Mi", "1536Mi"),
            ("100", "100"),
            ("1e3", "1k"),
            ("0", "0"),
            ("-250m", "-250m"),
        ] {
            assert_eq!(q(written).to_string(), canonical, "{written}");
            assert_eq!(q(canonical), q(written));
        }
    }

    #[test]
    fn sums_are_exact_and_keep_the_first_format() {
        let sum = q("1Gi").plus(q("512Mi"));
        assert_eq!(sum.to_string(), "1536Mi");
        assert_eq!(q("100m").plus(q("200m")).plus(q("700m")).to_string(), "1");
        assert_eq!(Quantity::ZERO.plus(q("1Gi")).to_string(), "1Gi");
        assert_eq!(Quantity::units(3).to_string(), "3");
    }

    #[test]
    fn what_upstream_refuses_does_not_parse() {
        for bad in ["", "-", "abc", "1.2.3", "1x", "1e", "1Kib", ".", "1e99999"] {
            assert_eq!(Quantity::parse(bad), None, "{bad}");
        }
    }
}
