//! Conversions from std time types to the protobuf well-known types.

use std::time::Duration;

/// The largest number of seconds a protobuf Duration may hold (10,000 years).
const MAX_SECONDS: i64 = 315_576_000_000;

/// Returns `duration` as a protobuf Duration, saturating at the largest one protobuf allows;
/// the server rejects such values as out of range anyway.
pub(crate) fn duration(duration: Duration) -> prost_types::Duration {
    match i64::try_from(duration.as_secs()) {
        Ok(seconds) if seconds <= MAX_SECONDS => {
            prost_types::Duration { seconds, nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(999_999_999) }
        }
        _ => prost_types::Duration { seconds: MAX_SECONDS, nanos: 999_999_999 },
    }
}

/// Returns `duration` as a protobuf Duration, or `None` when it is zero (the server's "unset").
pub(crate) fn nonzero_duration(duration: Duration) -> Option<prost_types::Duration> {
    (!duration.is_zero()).then(|| self::duration(duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::new(3, 500)), prost_types::Duration { seconds: 3, nanos: 500 });
        assert_eq!(duration(Duration::MAX), prost_types::Duration { seconds: MAX_SECONDS, nanos: 999_999_999 });
        assert_eq!(nonzero_duration(Duration::ZERO), None);
        assert_eq!(
            nonzero_duration(Duration::from_millis(1)),
            Some(prost_types::Duration { seconds: 0, nanos: 1_000_000 })
        );
    }
}
