//! Users, their permissions, and their signing secrets (one per user, rotated in place).

use super::audit::Changes;
use super::sql::{Row, params};
use super::{Result, Store, StoreError};
use crate::secret::Secret;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub name: String,
    pub permissions: Vec<String>,
    pub disabled: bool,
    pub created: i64,
    pub active_keys: i64,
}

impl User {
    pub fn may(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// A user's signing state, as the token plane needs it.
#[derive(Debug, Clone)]
pub struct UserAuth {
    pub user: User,
    pub secret: Secret,
    /// How many times the secret was rotated: personal access tokens made under another
    /// epoch are dead.
    pub epoch: i64,
}

const USER_COLUMNS: &str = "u.name, u.permissions, u.disabled, u.created,
    (SELECT count(*) FROM keys k WHERE k.user_name = u.name AND k.revoked IS NULL)";

/// What the token plane needs of a user: no key count (it would cost a read per user).
const AUTH_SELECT: &str =
    "SELECT u.name, u.permissions, u.disabled, u.created, 0, s.secret, s.epoch
    FROM users u JOIN secrets s ON s.user_name = u.name";

fn user_from_row(r: &Row) -> Result<User> {
    let perms: String = r.get(1)?;
    Ok(User {
        name: r.get(0)?,
        permissions: perms.split_whitespace().map(str::to_owned).collect(),
        disabled: r.get(2)?,
        created: r.get(3)?,
        active_keys: r.get(4)?,
    })
}

fn auth_from_row(r: &Row) -> Result<UserAuth> {
    Ok(UserAuth {
        user: user_from_row(r)?,
        secret: Secret::new(r.get(5)?),
        epoch: r.get(6)?,
    })
}

impl Store {
    pub fn add_user(&mut self, name: &str, secret: &Secret, now: i64) -> Result<()> {
        self.write(|| {
            match self.exec(
                "INSERT INTO users(name, created) VALUES (?1, ?2)",
                &params![name, now],
            ) {
                Err(StoreError::Duplicate(_)) => {
                    return Err(StoreError::UserExists(name.to_owned()));
                }
                other => other?,
            };
            self.exec(
                "INSERT INTO secrets(user_name, secret, rotated) VALUES (?1, ?2, ?3)",
                &params![name, secret.expose(), now],
            )?;
            self.record("user.add", name, Changes::new())
        })
    }

    /// Creates the user when absent; returns whether it did.
    pub fn ensure_user(&mut self, name: &str, secret: &Secret, now: i64) -> Result<bool> {
        match self.add_user(name, secret, now) {
            Ok(()) => Ok(true),
            Err(StoreError::UserExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {} FROM users u ORDER BY u.name", USER_COLUMNS);
        self.rows(&sql, &[])?.iter().map(user_from_row).collect()
    }

    pub fn user(&self, name: &str) -> Result<User> {
        let sql = format!("SELECT {} FROM users u WHERE u.name = ?1", USER_COLUMNS);
        self.row(&sql, &params![name])?
            .map(|r| user_from_row(&r))
            .transpose()?
            .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))
    }

    pub fn remove_user(&mut self, name: &str) -> Result<()> {
        self.write(|| {
            let active: i64 = self.value(
                "SELECT (SELECT count(*) FROM keys WHERE user_name = ?1 AND revoked IS NULL)
                      + (SELECT count(*) FROM pats WHERE user_name = ?1 AND revoked IS NULL)",
                &params![name],
            )?;
            if active > 0 {
                return Err(StoreError::UserHasKeys {
                    name: name.to_owned(),
                    count: active,
                });
            }
            let trusts = self.trusts_naming(name)?;
            if !trusts.is_empty() {
                return Err(StoreError::UserHasTrusts {
                    name: name.to_owned(),
                    trusts: trusts.join(", "),
                });
            }
            let was = self
                .row(
                    "SELECT permissions, disabled FROM users WHERE name = ?1",
                    &params![name],
                )?
                .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?;
            let (perms, disabled): (String, bool) = (was.get(0)?, was.get(1)?);
            self.exec("DELETE FROM users WHERE name = ?1", &params![name])?;
            // What the user was, so that the row says what went.
            self.record(
                "user.remove",
                name,
                Changes::new()
                    .from_to("permissions", perms, None::<String>)
                    .from_to("disabled", disabled, None::<bool>),
            )
        })
    }

    pub fn set_permission(&mut self, name: &str, permission: &str, granted: bool) -> Result<()> {
        self.write(|| {
            let perms: String = self
                .row(
                    "SELECT permissions FROM users WHERE name = ?1",
                    &params![name],
                )?
                .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?
                .get(0)?;
            let mut list: Vec<&str> = perms
                .split_whitespace()
                .filter(|p| *p != permission)
                .collect();
            if granted {
                list.push(permission);
            }
            list.sort_unstable();
            let new = list.join(" ");
            if new == perms {
                return Ok(());
            }
            self.exec(
                "UPDATE users SET permissions = ?2 WHERE name = ?1",
                &params![name, &new],
            )?;
            self.record(
                if granted { "user.grant" } else { "user.revoke" },
                name,
                Changes::new().from_to("permissions", perms.as_str(), new.as_str()),
            )
        })
    }

    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<()> {
        self.write(|| {
            let was: bool = self
                .row("SELECT disabled FROM users WHERE name = ?1", &params![name])?
                .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?
                .get(0)?;
            if was == disabled {
                return Ok(());
            }
            self.exec(
                "UPDATE users SET disabled = ?2 WHERE name = ?1",
                &params![name, disabled],
            )?;
            self.record(
                if disabled {
                    "user.disable"
                } else {
                    "user.enable"
                },
                name,
                Changes::new().from_to("disabled", was, disabled),
            )
        })
    }

    pub fn rotate_secret(&mut self, name: &str, secret: &Secret, now: i64) -> Result<()> {
        self.write(|| {
            let epoch: i64 = self
                .row(
                    "SELECT epoch FROM secrets WHERE user_name = ?1",
                    &params![name],
                )?
                .ok_or_else(|| StoreError::UnknownUser(name.to_owned()))?
                .get(0)?;
            self.exec(
                "UPDATE secrets SET secret = ?2, rotated = ?3, epoch = epoch + 1 WHERE user_name = ?1",
                &params![name, secret.expose(), now],
            )?;
            // The epoch, never the secret: it tells that a rotation happened and how many.
            self.record(
                "user.rotate-secret",
                name,
                Changes::new().from_to("secret_epoch", epoch, epoch + 1),
            )
        })
    }

    /// Every user with its current secret, one at a time (a server's start).
    pub fn each_user_auth(&self, mut f: impl FnMut(UserAuth)) -> Result<()> {
        self.each(AUTH_SELECT, &[], |r| {
            f(auth_from_row(&r)?);
            Ok(())
        })
    }

    /// One user with its current secret.
    pub fn user_auth(&self, name: &str) -> Result<Option<UserAuth>> {
        self.row(&format!("{AUTH_SELECT} WHERE u.name = ?1"), &params![name])?
            .map(|r| auth_from_row(&r))
            .transpose()
    }

    /// The users the change feed names between two positions, as they are now.
    pub(super) fn changed_user_auths(&self, after: i64, upto: i64) -> Result<Vec<UserAuth>> {
        let sql = format!(
            "{AUTH_SELECT} WHERE u.name IN ({})",
            super::CHANGED.replace("{entity}", "user")
        );
        self.rows(&sql, &params![after, upto])?
            .iter()
            .map(auth_from_row)
            .collect()
    }
}
