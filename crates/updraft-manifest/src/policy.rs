//! The device's acceptance rules for a verified manifest (RFC 9124: replayed image, image for
//! another device, image too large for the slot, manifest used after its expiry).

use crate::{Manifest, Policy, PolicyError};

impl Manifest<'_> {
    /// Check a verified manifest against the device's policy.
    ///
    /// Order: device identity first (vendor, class), then anti-rollback, size, expiry. Expiry is
    /// checked only when the device knows the time; a manifest is expired from its use-before
    /// second on.
    pub fn check_policy(&self, policy: &Policy) -> Result<(), PolicyError> {
        if self.vendor_id != policy.vendor_id {
            return Err(PolicyError::WrongVendor);
        }
        if self.class_id != policy.class_id {
            return Err(PolicyError::WrongClass);
        }
        if self.sequence <= policy.installed_sequence {
            return Err(PolicyError::Rollback {
                installed: policy.installed_sequence,
                found: self.sequence,
            });
        }
        if self.image_size > policy.max_image_size {
            return Err(PolicyError::TooLarge {
                size: self.image_size,
                max: policy.max_image_size,
            });
        }
        if let (Some(expires), Some(now)) = (self.expires_at, policy.now)
            && now >= expires
        {
            return Err(PolicyError::Expired(expires));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{ComponentId, Manifest, Policy, PolicyError, Uuid};

    fn manifest() -> Manifest<'static> {
        Manifest {
            sequence: 5,
            vendor_id: Uuid([1; 16]),
            class_id: Uuid([2; 16]),
            component_id: ComponentId::default(),
            image_digest: [0; 32],
            image_size: 1000,
            uri: None,
            version: None,
            precursor_digest: None,
            expires_at: Some(2000),
        }
    }

    fn policy() -> Policy {
        Policy {
            vendor_id: Uuid([1; 16]),
            class_id: Uuid([2; 16]),
            installed_sequence: 4,
            max_image_size: 1000,
            now: Some(1999),
        }
    }

    #[test]
    fn matching_manifest_is_accepted() {
        assert_eq!(manifest().check_policy(&policy()), Ok(()));
    }

    #[test]
    fn other_vendor_is_refused() {
        let p = Policy {
            vendor_id: Uuid([9; 16]),
            ..policy()
        };
        assert_eq!(manifest().check_policy(&p), Err(PolicyError::WrongVendor));
    }

    #[test]
    fn other_class_is_refused() {
        let p = Policy {
            class_id: Uuid([9; 16]),
            ..policy()
        };
        assert_eq!(manifest().check_policy(&p), Err(PolicyError::WrongClass));
    }

    #[test]
    fn same_or_lower_sequence_is_a_rollback() {
        for installed in [5, 6, u64::MAX] {
            let p = Policy {
                installed_sequence: installed,
                ..policy()
            };
            assert_eq!(
                manifest().check_policy(&p),
                Err(PolicyError::Rollback {
                    installed,
                    found: 5
                })
            );
        }
    }

    #[test]
    fn image_larger_than_the_slot_is_refused() {
        let p = Policy {
            max_image_size: 999,
            ..policy()
        };
        assert_eq!(
            manifest().check_policy(&p),
            Err(PolicyError::TooLarge {
                size: 1000,
                max: 999
            })
        );
    }

    #[test]
    fn expiry_applies_from_the_use_before_second_and_only_when_time_is_known() {
        let at = Policy {
            now: Some(2000),
            ..policy()
        };
        assert_eq!(
            manifest().check_policy(&at),
            Err(PolicyError::Expired(2000))
        );
        let unknown = Policy {
            now: None,
            ..policy()
        };
        assert_eq!(manifest().check_policy(&unknown), Ok(()));
        let no_expiry = Manifest {
            expires_at: None,
            ..manifest()
        };
        assert_eq!(
            no_expiry.check_policy(&Policy {
                now: Some(u64::MAX),
                ..policy()
            }),
            Ok(())
        );
    }
}
