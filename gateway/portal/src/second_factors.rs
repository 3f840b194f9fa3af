//! [`SecondFactors`]: what a user's sign-in needs after its first factor, from what they enrolled
//! (TOTP, passkeys) and what their role requires (a second factor, a passkey). The browser's login,
//! the programs' password login and every page's check ask it, so the three cannot disagree.

use sallyport_core::policy::Role;
use sallyport_state::StateError;

use crate::Portal;

/// What a user's sign-in needs after its first factor, from what they enrolled and what their role
/// requires: the one answer the browser's login, the programs' login and every page's check use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SecondFactors {
    totp: bool,
    passkeys: bool,
    mfa_required: bool,
    passkey_required: bool,
}

impl SecondFactors {
    /// The factors of user `user_id`, whose role is `role`. A passkey counts, and can be required, only
    /// while the portal can use passkeys at all (a public_url with a DNS name): otherwise nobody could
    /// sign in with one.
    pub(crate) fn of(portal: &Portal, user_id: i64, role: Role) -> Result<Self, StateError> {
        let state = portal.broker.state();
        let available = portal.passkeys.available();
        Ok(SecondFactors {
            totp: state.totp(user_id)?.is_some(),
            passkeys: available && state.has_passkeys(user_id)?,
            mfa_required: state.mfa_required_roles()?.contains(&role),
            passkey_required: available && state.passkey_required_roles()?.contains(&role),
        })
    }

    /// A TOTP or recovery code completes the sign-in: the user has TOTP, and their role does not
    /// demand a passkey they have (one who has none yet signs in with TOTP to add one).
    pub(crate) fn totp(&self) -> bool {
        self.totp && !(self.passkey_required && self.passkeys)
    }

    /// One of the user's passkeys completes the sign-in.
    pub(crate) fn passkey(&self) -> bool {
        self.passkeys
    }

    /// Whether the first factor alone is not enough.
    pub(crate) fn needed(&self) -> bool {
        self.totp() || self.passkey()
    }

    /// What the user must set up before anything else, in words, if anything.
    pub(crate) fn missing(&self) -> Option<&'static str> {
        if self.passkey_required && !self.passkeys {
            Some("Your role must sign in with a passkey: add one here before you go on.")
        } else if self.mfa_required && !self.totp && !self.passkeys {
            Some("Your role must use two-factor authentication: set it up here before you go on.")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factors(totp: bool, passkeys: bool, mfa: bool, passkey: bool) -> SecondFactors {
        SecondFactors {
            totp,
            passkeys,
            mfa_required: mfa,
            passkey_required: passkey,
        }
    }

    #[test]
    fn nothing_enrolled_and_nothing_required_is_the_password_alone() {
        let none = factors(false, false, false, false);
        assert!(!none.needed());
        assert_eq!(none.missing(), None);
    }

    #[test]
    fn either_factor_completes_a_sign_in_unless_the_role_demands_a_passkey() {
        let both = factors(true, true, true, false);
        assert!(both.totp() && both.passkey() && both.missing().is_none());
        let demanded = factors(true, true, true, true);
        assert!(
            !demanded.totp(),
            "TOTP must not stand in for a required passkey"
        );
        assert!(demanded.passkey() && demanded.missing().is_none());
    }

    #[test]
    fn a_role_that_demands_a_passkey_signs_in_with_totp_only_to_add_one() {
        let without = factors(true, false, false, true);
        assert!(without.totp(), "the user needs a way in to add the passkey");
        assert!(without.missing().is_some_and(|m| m.contains("passkey")));
        let nothing = factors(false, false, false, true);
        assert!(!nothing.needed());
        assert!(nothing.missing().is_some());
    }

    #[test]
    fn a_required_second_factor_is_met_by_either() {
        assert!(factors(false, false, true, false).missing().is_some());
        assert_eq!(factors(true, false, true, false).missing(), None);
        assert_eq!(factors(false, true, true, false).missing(), None);
    }
}
