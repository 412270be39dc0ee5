//! Provider limits and the part plan of a multipart transfer.

use crate::size::format_size;

/// What a destination accepts, as data (not booleans scattered through the code). Each
/// provider owns its value (`ferry_providers::s3::LIMITS`, …) and reports it through
/// `Provider::limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_part_size: u64,
    pub max_part_size: u64,
    pub max_parts: u64,
    pub max_object_size: u64,
    /// The part size used when the user does not choose one.
    pub default_part_size: u64,
}

/// How one object is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub object_size: u64,
    pub part_size: u64,
}

const MIB: u64 = 1 << 20;

impl PartPlan {
    /// The smallest 1 MiB-aligned part size ≥ `wanted` (or the default) that keeps the part
    /// count within the destination's limit, clamped to its min/max part size.
    pub fn choose(object_size: u64, wanted: Option<u64>, limits: &Limits) -> PartPlan {
        let mut part = wanted.unwrap_or(limits.default_part_size).max(limits.min_part_size).max(1);
        if limits.max_parts != u64::MAX {
            let needed = object_size.div_ceil(limits.max_parts);
            if needed > part {
                part = needed.div_ceil(MIB) * MIB;
            }
        }
        PartPlan { object_size, part_size: part.min(limits.max_part_size) }
    }

    /// Number of parts (at least one, even for an empty object).
    pub fn count(&self) -> u64 {
        self.object_size.div_ceil(self.part_size).max(1)
    }

    /// Byte range `[start, end)` of part `index` (0-based).
    pub fn range(&self, index: u64) -> std::ops::Range<u64> {
        let start = index * self.part_size;
        start..(start + self.part_size).min(self.object_size)
    }

    /// Length of part `index`.
    pub fn len(&self, index: u64) -> u64 {
        let r = self.range(index);
        r.end - r.start
    }

    /// Whether the object should go as one request rather than a multipart upload.
    pub fn is_single(&self) -> bool {
        self.count() == 1
    }

    /// Number of parts as part numbers are typed (`u32`); an error, never a truncation, when
    /// there are more.
    pub fn parts(&self) -> Result<u32, PlanError> {
        u32::try_from(self.count()).map_err(|_| PlanError::TooManyParts {
            object_size: self.object_size,
            part_size: self.part_size,
            parts: self.count(),
        })
    }

    /// The number of parts, when the destination takes this plan as it is: every request within
    /// its largest part (a single request too: S3's CopyObject and PutObject stop at 5 GiB),
    /// every part but the last at least its smallest, at most its part count. Plans from
    /// [`PartPlan::choose`] pass for any object the destination can hold; a plan made any other
    /// way (a part size carried over from a journal, a caller's own) is checked here before
    /// the first request, rather than refused by the service after thousands of parts.
    pub fn check(&self, limits: &Limits) -> Result<u32, PlanError> {
        let parts = self.parts()?;
        let beyond = || PlanError::BeyondLimits {
            object_size: self.object_size,
            part_size: self.part_size,
            parts: self.count(),
            min_part_size: limits.min_part_size,
            max_part_size: limits.max_part_size,
            max_parts: limits.max_parts,
        };
        let largest = self.part_size.min(self.object_size);
        if largest > limits.max_part_size || self.count() > limits.max_parts || (parts > 1 && self.part_size < limits.min_part_size) {
            return Err(beyond());
        }
        Ok(parts)
    }

    /// The plan of an object of `object_size` under a memory budget of `budget` bytes: parts of
    /// [`Limits::part_size_within`] (raised only as the destination's part count limit demands),
    /// each of which fits the budget — so a single request (`count() == 1`) holds at most
    /// the budget too. An error when no part size the destination allows fits.
    pub fn fit(object_size: u64, wanted: Option<u64>, limits: &Limits, budget: u64) -> Result<PartPlan, PlanError> {
        let base = limits.part_size_within(wanted, budget)?;
        let plan = PartPlan::choose(object_size, Some(base), limits);
        if plan.part_size > budget {
            return Err(PlanError::PartsOverBudget {
                object_size,
                max_parts: limits.max_parts,
                part_size: object_size.div_ceil(limits.max_parts).div_ceil(MIB) * MIB,
                budget,
            });
        }
        plan.parts()?;
        Ok(plan)
    }
}

impl Limits {
    /// The part size to cut objects into under a memory budget of `budget` bytes: `wanted` (or
    /// the default), raised to the destination's minimum, and lowered to the largest 1 MiB
    /// multiple the budget holds when it does not fit (to the budget itself below 1 MiB).
    /// An error when even the destination's smallest part does not fit.
    pub fn part_size_within(&self, wanted: Option<u64>, budget: u64) -> Result<u64, PlanError> {
        if self.min_part_size > budget {
            return Err(PlanError::BudgetBelowMinPart { min_part_size: self.min_part_size, budget });
        }
        let part = wanted.unwrap_or(self.default_part_size).max(self.min_part_size).max(1).min(self.max_part_size);
        if part <= budget {
            return Ok(part);
        }
        let aligned = if budget >= MIB { budget / MIB * MIB } else { budget };
        Ok(aligned.max(self.min_part_size).min(self.max_part_size))
    }
}

/// Why no part plan fits an object, the destination's limits and the memory budget together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The destination's smallest part is larger than the whole budget.
    #[error("the destination's smallest part is {}, more than --max-memory {} holds: raise --max-memory to at least {}", format_size(*min_part_size), format_size(*budget), flag_size(*min_part_size))]
    BudgetBelowMinPart { min_part_size: u64, budget: u64 },
    /// The destination's part count limit forces parts larger than the budget.
    #[error("an object of {} in at most {max_parts} parts needs parts of at least {}, more than --max-memory {} holds: raise --max-memory to at least {}", format_size(*object_size), format_size(*part_size), format_size(*budget), flag_size(*part_size))]
    PartsOverBudget { object_size: u64, max_parts: u64, part_size: u64, budget: u64 },
    /// The destination does not take parts of this size, or this many.
    #[error("an object of {} in parts of {} is {parts} parts: the destination takes parts of {} to {}, at most {max_parts} of them", format_size(*object_size), format_size(*part_size), format_size(*min_part_size), format_size(*max_part_size))]
    BeyondLimits { object_size: u64, part_size: u64, parts: u64, min_part_size: u64, max_part_size: u64, max_parts: u64 },
    /// More parts than part numbers (`u32`) can count.
    #[error("an object of {} in parts of {} would need {parts} parts, more than {}: raise --part-size", format_size(*object_size), format_size(*part_size), u32::MAX)]
    TooManyParts { object_size: u64, part_size: u64, parts: u64 },
}

/// A size as the user would type it back as a flag: whole MiB, rounded up.
fn flag_size(bytes: u64) -> String {
    format!("{}MiB", bytes.div_ceil(MIB))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The plan math on limits of the two shapes it must handle; the providers own the real
    // values (S3's are these).
    const S3: Limits =
        Limits { min_part_size: 5 << 20, max_part_size: 5 << 30, max_parts: 10_000, max_object_size: 5 << 40, default_part_size: 8 << 20 };
    const LOCAL: Limits =
        Limits { min_part_size: 1, max_part_size: u64::MAX, max_parts: u64::MAX, max_object_size: u64::MAX, default_part_size: 8 << 20 };

    #[test]
    fn ranges_cover_the_object_exactly() {
        let p = PartPlan::choose(64 * MIB + 1, Some(8 * MIB), &S3);
        assert_eq!(p.count(), 9);
        assert_eq!(p.range(0), 0..8 * MIB);
        assert_eq!(p.range(8), 64 * MIB..64 * MIB + 1);
        let total: u64 = (0..p.count()).map(|i| p.range(i).end - p.range(i).start).sum();
        assert_eq!(total, 64 * MIB + 1);
    }

    #[test]
    fn part_size_grows_to_respect_the_part_count_limit() {
        let size = 5u64 << 40; // 5 TiB at S3's 10,000-part limit
        let p = PartPlan::choose(size, None, &S3);
        assert!(p.count() <= 10_000, "{} parts", p.count());
        assert_eq!(p.part_size % MIB, 0);
    }

    #[test]
    fn s3_minimum_part_size_is_enforced() {
        let p = PartPlan::choose(100 * MIB, Some(MIB), &S3);
        assert_eq!(p.part_size, 5 * MIB);
    }

    #[test]
    fn a_part_size_over_the_budget_is_lowered_to_the_largest_that_fits() {
        // Issue 12, case 6: --part-size 10GiB under --max-memory 16MiB.
        let p = PartPlan::fit(400_000_000, Some(10 << 30), &LOCAL, 16 * MIB).unwrap();
        assert_eq!(p.part_size, 16 * MIB);
        assert!(!p.is_single());
        // Not 1 MiB-aligned: the largest 1 MiB multiple under it.
        assert_eq!(S3.part_size_within(Some(1 << 30), 20 * MIB + 5).unwrap(), 20 * MIB);
        // Below 1 MiB (local destinations allow any part): the budget itself.
        assert_eq!(LOCAL.part_size_within(None, 1000).unwrap(), 1000);
        // A single request holds at most the budget.
        for size in [0, 1, 16 * MIB, 16 * MIB + 1, 5 << 30] {
            let p = PartPlan::fit(size, Some(5 << 30), &S3, 16 * MIB).unwrap();
            assert!(p.part_size <= 16 * MIB && (!p.is_single() || size <= 16 * MIB), "{size}: {p:?}");
        }
    }

    #[test]
    fn a_plan_that_cannot_fit_the_budget_is_an_error() {
        // Issue 12, case 6: a 5 TiB object needs 10,000 parts of at least 525 MiB on S3.
        let e = PartPlan::fit(5 << 40, None, &S3, 64 * MIB).unwrap_err();
        assert_eq!(e, PlanError::PartsOverBudget { object_size: 5 << 40, max_parts: 10_000, part_size: 525 * MIB, budget: 64 * MIB });
        assert!(e.to_string().contains("raise --max-memory to at least 525MiB"), "{e}");
        // S3's 5 MiB minimum part does not fit a 1 MiB budget.
        let e = PartPlan::fit(100, None, &S3, MIB).unwrap_err();
        assert!(matches!(e, PlanError::BudgetBelowMinPart { .. }), "{e}");
    }

    #[test]
    fn part_counts_are_checked_never_truncated() {
        // Issue 12, case 11: 1-byte parts of a 5 GiB object are more parts than a u32 numbers.
        let p = PartPlan::choose(5 << 30, Some(1), &LOCAL);
        assert_eq!(p.count(), 5 << 30);
        assert!(matches!(p.parts(), Err(PlanError::TooManyParts { parts, .. }) if parts == 5 << 30));
        assert!(PartPlan::fit(5 << 30, Some(1), &LOCAL, 64 * MIB).is_err());
        assert_eq!(PartPlan::choose(64 * MIB, Some(8 * MIB), &S3).parts(), Ok(8));
    }

    #[test]
    fn plans_beyond_the_destinations_limits_are_refused_before_a_request() {
        // Issue 13: 12,000 parts of 8 MiB (a 93.75 GiB object) are more than S3's 10,000.
        let over = PartPlan { object_size: 12_000 * 8 * MIB, part_size: 8 * MIB };
        assert_eq!(over.parts(), Ok(12_000), "a u32 counts them: only the limits can refuse them");
        let e = over.check(&S3).unwrap_err();
        assert!(matches!(e, PlanError::BeyondLimits { parts: 12_000, max_parts: 10_000, .. }), "{e}");
        assert!(e.to_string().contains("at most 10000"), "{e}");
        // The plan `choose` makes for that object and part size fits.
        let chosen = PartPlan::choose(over.object_size, Some(8 * MIB), &S3);
        assert_eq!(chosen.check(&S3), Ok(chosen.count() as u32));
        assert!(chosen.count() <= 10_000 && chosen.part_size > 8 * MIB, "{chosen:?}");
        // One request or one part over 5 GiB is refused, as S3 would (CopyObject, UploadPartCopy).
        let one = PartPlan { object_size: 6 << 30, part_size: 6 << 30 };
        assert!(one.is_single());
        assert!(matches!(one.check(&S3), Err(PlanError::BeyondLimits { .. })));
        assert!(PartPlan { object_size: 12 << 30, part_size: 6 << 30 }.check(&S3).is_err());
        // Parts under the minimum, when there is more than one.
        assert!(PartPlan { object_size: 10 * MIB, part_size: MIB }.check(&S3).is_err());
        assert_eq!(PartPlan { object_size: MIB, part_size: MIB }.check(&S3), Ok(1));
        // S3's largest object in 5 GiB parts, and no limit at all on a local disk.
        assert_eq!(PartPlan { object_size: 5 << 40, part_size: 5 << 30 }.check(&S3), Ok(1024));
        assert_eq!(over.check(&LOCAL), Ok(12_000));
    }

    #[test]
    fn empty_and_small_objects_are_single() {
        assert!(PartPlan::choose(0, None, &S3).is_single());
        assert!(PartPlan::choose(8 * MIB, None, &S3).is_single());
        assert!(!PartPlan::choose(8 * MIB + 1, None, &S3).is_single());
    }
}
