//! Python measures durations in nanoseconds; `:telemetry` handlers receive
//! native time units. The conversion is checked: a finite value that has no
//! representation once converted (an `i64` overflow, a float that becomes
//! infinite) is `None`, and the event is rejected, never encoded.

use crate::validate::Number;

const NS_PER_SECOND: i64 = 1_000_000_000;

/// `:erlang.convert_time_unit(1, :second, :native)`, as the NIF learns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NativeUnits {
    per_second: i64,
}

impl NativeUnits {
    pub const NANOSECONDS: NativeUnits = NativeUnits {
        per_second: NS_PER_SECOND,
    };

    /// Units of `per_second` per second; `None` unless positive.
    pub fn new(per_second: i64) -> Option<NativeUnits> {
        (per_second > 0).then_some(NativeUnits { per_second })
    }

    /// Integer nanoseconds in native units, saturating (for the NIF's own
    /// clock readings, which cannot overflow in practice).
    pub fn from_ns_saturating(&self, ns: i64) -> i64 {
        match self.duration(Number::Int(ns)) {
            Some(Number::Int(v)) => v,
            _ if ns < 0 => i64::MIN,
            _ => i64::MAX,
        }
    }

    /// A duration in nanoseconds as native units, `None` when the result is
    /// not representable (out of `i64`, or not finite).
    pub fn duration(&self, ns: Number) -> Option<Number> {
        match ns {
            Number::Int(_) | Number::Float(_) if self.per_second == NS_PER_SECOND => {
                Some(ns).filter(is_finite)
            }
            Number::Int(i) => {
                let v = i128::from(i) * i128::from(self.per_second) / i128::from(NS_PER_SECOND);
                i64::try_from(v).ok().map(Number::Int)
            }
            Number::Float(f) => {
                // The ratio first: `f * per_second` alone overflows for large f.
                let v = f * (self.per_second as f64 / NS_PER_SECOND as f64);
                Some(Number::Float(v)).filter(is_finite)
            }
        }
    }
}

fn is_finite(n: &Number) -> bool {
    match n {
        Number::Int(_) => true,
        Number::Float(f) => f.is_finite(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_pass_unchanged_even_when_huge() {
        let ns = NativeUnits::NANOSECONDS;
        assert_eq!(
            ns.duration(Number::Float(1.0e300)),
            Some(Number::Float(1.0e300))
        );
        assert_eq!(
            ns.duration(Number::Int(i64::MAX)),
            Some(Number::Int(i64::MAX))
        );
        assert_eq!(ns.duration(Number::Float(f64::INFINITY)), None);
    }

    #[test]
    fn coarser_and_finer_units_are_checked() {
        let us = NativeUnits::new(1_000_000).unwrap();
        assert_eq!(us.duration(Number::Int(1_500)), Some(Number::Int(1)));
        assert_eq!(
            us.duration(Number::Float(1.0e300)),
            Some(Number::Float(1.0e297))
        );
        let ps = NativeUnits::new(1_000_000_000_000).unwrap();
        assert_eq!(ps.duration(Number::Int(i64::MAX)), None);
        assert_eq!(ps.duration(Number::Int(i64::MIN)), None);
        assert_eq!(ps.duration(Number::Float(f64::MAX)), None);
        assert_eq!(
            ps.duration(Number::Float(1.0e300)),
            Some(Number::Float(1.0e303))
        );
        assert_eq!(ps.from_ns_saturating(i64::MAX), i64::MAX);
        assert_eq!(ps.from_ns_saturating(2), 2_000);
    }

    #[test]
    fn non_positive_units_are_refused() {
        assert_eq!(NativeUnits::new(0), None);
        assert_eq!(NativeUnits::new(-1), None);
    }
}
