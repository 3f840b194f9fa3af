//! The authentication relay: each attempt of the user's ssh is passed to the target as it comes, and the
//! target's answer (with the methods the proxy can relay) goes back. Public keys are refused by the
//! handler: a signature made for the gateway's session cannot log in to the target.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use russh::client::{AuthResult, KeyboardInteractiveAuthResponse};
use russh::server::{self, Auth};
use russh::{MethodKind, MethodSet};

use super::handler::ProxyHandler;
use super::{MAX_PROMPTS, shown};

/// Methods the proxy can relay, among those the target offers.
pub(super) fn relayable(methods: &MethodSet) -> MethodSet {
    let mut out = Vec::new();
    if methods.contains(&MethodKind::Password) {
        out.push(MethodKind::Password);
    }
    if methods.contains(&MethodKind::KeyboardInteractive) {
        out.push(MethodKind::KeyboardInteractive);
    }
    MethodSet::from(&out[..])
}

impl ProxyHandler {
    /// Answers the user's ssh as the target answered a `none` or `password` attempt.
    pub(super) async fn relayed(
        &mut self,
        user: &str,
        method: &str,
        answer: Option<Result<AuthResult, russh::Error>>,
    ) -> Result<Auth, russh::Error> {
        // `None`: the session ended while the target was asked; its reason is already set.
        let Some(answer) = answer else {
            return Err(russh::Error::Disconnect);
        };
        match answer {
            Ok(AuthResult::Success) => self.accepted(user, method).await,
            Ok(AuthResult::Failure {
                remaining_methods,
                partial_success,
            }) => {
                self.rejected(user, method, &remaining_methods, partial_success)
                    .await
            }
            Err(error) => Err(self.target_lost(&error)),
        }
    }

    /// A keyboard-interactive round: starts it at the target, or passes the user's answers on; the
    /// target's prompts are shown to the user, bounded and without control characters.
    pub(super) async fn keyboard_interactive(
        &mut self,
        user: &str,
        submethods: &str,
        response: Option<server::Response<'_>>,
    ) -> Result<Auth, russh::Error> {
        let shared = self.shared.clone();
        let answer = match response {
            None => {
                let submethods = (!submethods.is_empty()).then(|| submethods.to_owned());
                let start = self
                    .target
                    .authenticate_keyboard_interactive_start(user, submethods);
                shared.unless_ended(start).await
            }
            Some(response) => {
                let answers: Vec<String> = response
                    .take(MAX_PROMPTS)
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .collect();
                let respond = self
                    .target
                    .authenticate_keyboard_interactive_respond(answers);
                shared.unless_ended(respond).await
            }
        };
        // `None`: the session ended while the target was asked; its reason is already set.
        let Some(answer) = answer else {
            return Err(russh::Error::Disconnect);
        };
        use KeyboardInteractiveAuthResponse as R;
        match answer {
            Ok(R::Success) => self.accepted(user, "keyboard-interactive").await,
            Ok(R::Failure {
                remaining_methods,
                partial_success,
            }) => {
                self.rejected(
                    user,
                    "keyboard-interactive",
                    &remaining_methods,
                    partial_success,
                )
                .await
            }
            Ok(R::InfoRequest {
                name,
                instructions,
                prompts,
            }) => Ok(Auth::Partial {
                name: Cow::Owned(shown(&name)),
                instructions: Cow::Owned(shown(&instructions)),
                prompts: Cow::Owned(
                    prompts
                        .into_iter()
                        .take(MAX_PROMPTS)
                        .map(|p| (Cow::Owned(shown(&p.prompt)), p.echo))
                        .collect(),
                ),
            }),
            Err(error) => Err(self.target_lost(&error)),
        }
    }

    /// The user is in: the target accepted them.
    async fn accepted(&mut self, user: &str, method: &str) -> Result<Auth, russh::Error> {
        self.user = Some(user.to_owned());
        self.shared.authenticated.store(true, Ordering::Relaxed);
        self.sink.target_login(user);
        self.marker(format!(
            "authenticated to {} as {user} ({method}, relayed to the target)",
            self.addr
        ))
        .await?;
        Ok(Auth::Accept)
    }

    /// The target said no; its remaining methods (those the proxy can relay) are offered to the user.
    async fn rejected(
        &self,
        user: &str,
        method: &str,
        remaining: &MethodSet,
        partial_success: bool,
    ) -> Result<Auth, russh::Error> {
        let offered = relayable(remaining);
        if method != "none" {
            self.marker(format!("the target refused {user} ({method})"))
                .await?;
        } else if offered.is_empty() {
            let names: Vec<&str> = remaining.iter().map(<&str>::from).collect();
            self.marker(format!(
                "the target accepts only {} for {user}; sallyport proxy relays passwords and \
                 keyboard-interactive prompts, not keys",
                names.join(", ")
            ))
            .await?;
        }
        Ok(Auth::Reject {
            proceed_with_methods: Some(offered),
            partial_success,
        })
    }
}
