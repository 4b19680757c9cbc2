use std::fmt;

/// An amount of money in whole millionths of the currency unit, so that sums and the budget
/// guard's comparisons are exact: `20 + 3.39` is `23.39`, never `23.389999999999997`.
///
/// Amounts carry at most six decimal places. Arithmetic saturates at about 9.2 × 10^12
/// units rather than wrap; a single amount from a request is at most `MAX_INPUT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);
    /// Room without limit: what a venture without a budget may still spend.
    pub const MAX: Money = Money(i64::MAX);
    /// Millionths per unit.
    pub const SCALE: i64 = 1_000_000;
    /// The largest amount a request may carry, 10^9: nine digits before the point and six
    /// after are fifteen significant digits, which a JSON number read as an `f64` carries
    /// exactly, so every accepted amount is the decimal the client wrote.
    pub const MAX_INPUT: Money = Money(1_000_000_000 * Money::SCALE);

    pub const fn from_micros(micros: i64) -> Money {
        Money(micros)
    }

    /// A whole number of units.
    pub const fn units(units: i64) -> Money {
        Money(units.saturating_mul(Money::SCALE))
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// The amount a number read from a request stands for: `None` unless it lies in
    /// `0..=MAX_INPUT` and has at most six decimal places.
    ///
    /// A number written with six places or fewer reads as the `f64` nearest that decimal,
    /// which is what `micros / SCALE` computes (division rounds correctly). A client's own
    /// float arithmetic can land a few units in the last place away from it (`0.1 + 0.2`
    /// sends `0.30000000000000004`), so up to `NOISE_ULPS` of distance still counts as the
    /// decimal; a real seventh place (`0.1234567`) is millions of units away.
    pub fn from_decimal(x: f64) -> Option<Money> {
        const NOISE_ULPS: u64 = 4;
        if !(0.0..=Money::MAX_INPUT.to_f64()).contains(&x) {
            return None;
        }
        let micros = (x * Money::SCALE as f64).round();
        let decimal = micros / Money::SCALE as f64;
        // Both are non-negative, so their bit patterns are ordered as the numbers are and
        // the difference counts the representable numbers between them.
        (decimal.to_bits().abs_diff(x.to_bits()) <= NOISE_ULPS).then_some(Money(micros as i64))
    }

    /// The amount nearest `x`, to the millionth: how a stored `REAL` column reads back
    /// (exact below 2^53 millionths, about 9 × 10^9 units). Saturates; NaN reads as 0.
    pub fn from_f64_nearest(x: f64) -> Money {
        Money((x * Money::SCALE as f64).round() as i64)
    }

    /// The `f64` nearest the amount: what the `REAL` columns and the metrics hold.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / Money::SCALE as f64
    }

    /// Whether the amount is a whole number of units.
    pub fn is_whole(self) -> bool {
        self.0 % Money::SCALE == 0
    }

    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0))
    }
}

/// The exact decimal, with no trailing zeros: `23.39`, `5`, `0.000001`, `-2`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let (whole, fraction) = (magnitude / Money::SCALE as u64, magnitude % Money::SCALE as u64);
        if fraction == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{fraction:06}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Money::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_with_up_to_six_places_are_read_exactly() {
        assert_eq!(Money::from_decimal(23.39), Some(Money(23_390_000)));
        assert_eq!(Money::from_decimal(0.000001), Some(Money(1)));
        assert_eq!(Money::from_decimal(0.1), Some(Money(100_000)));
        assert_eq!(Money::from_decimal(999_999_999.999999), Some(Money(999_999_999_999_999)));
        assert_eq!(Money::from_decimal(1e9), Some(Money::MAX_INPUT));
        assert_eq!(Money::from_decimal(0.0), Some(Money::ZERO));
    }

    #[test]
    fn a_clients_float_noise_counts_as_the_decimal_it_meant() {
        assert_eq!(Money::from_decimal(0.1 + 0.2), Some(Money(300_000)));
        assert_eq!(Money::from_decimal(23.389999999999997), Some(Money(23_390_000)));
        assert_eq!(Money::from_decimal(7.0 * 0.000001), Some(Money(7)));
    }

    #[test]
    fn more_places_negatives_and_huge_numbers_are_refused() {
        for x in [0.0000001, 1.2345678, 0.0000005, 123_456.000_000_1, -1.0, 1e9 + 1.0, f64::INFINITY, f64::NAN] {
            assert_eq!(Money::from_decimal(x), None, "{x}");
        }
    }

    #[test]
    fn sums_are_exact_and_render_as_the_decimal() {
        let total: Money = [20.0, 3.39].iter().map(|x| Money::from_decimal(*x).unwrap()).sum();
        assert_eq!(total.to_string(), "23.39");
        let spent = (0..10).map(|_| Money::from_decimal(0.1).unwrap()).sum::<Money>();
        assert_eq!(spent, Money::from_decimal(1.0).unwrap());
        assert_eq!(Money(5_000_000).to_string(), "5");
        assert_eq!(Money(1).to_string(), "0.000001");
        assert_eq!(Money(-2_500_000).to_string(), "-2.5");
        assert_eq!(Money::MAX.to_string(), "9223372036854.775807");
    }

    #[test]
    fn stored_reals_read_back_to_the_nearest_millionth() {
        assert_eq!(Money::from_f64_nearest(23.389999999999997), Money(23_390_000));
        assert_eq!(Money::from_f64_nearest(Money(123_456_789_012_345).to_f64()), Money(123_456_789_012_345));
        assert_eq!(Money::from_f64_nearest(f64::NAN), Money::ZERO);
        assert_eq!(Money::from_f64_nearest(1e300), Money::MAX);
    }
}
