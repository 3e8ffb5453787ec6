//! What a certificate lets its holder do in a cluster. The cluster's CA
//! writes the role into every certificate it signs (`wimpy cert issue
//! --role`); nodes read it from the peer's certificate on every connection.

/// A certificate's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The master: changes the ring, moves ranges, fences writes.
    Master,
    /// A worker: registers with the master, heartbeats, leaves.
    Worker,
    /// An operator: reads and writes, and asks the master for membership
    /// changes (`wimpy leave`).
    Admin,
    /// A program or person that reads and writes keys and runs jobs.
    Client,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Master, Role::Worker, Role::Admin, Role::Client];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Worker => "worker",
            Role::Admin => "admin",
            Role::Client => "client",
        }
    }

    /// Whether the role runs a node (serves a listener others connect to).
    pub fn is_node(self) -> bool {
        matches!(self, Role::Master | Role::Worker)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Role> for crate::wimpy_capnp::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Master => crate::wimpy_capnp::Role::Master,
            Role::Worker => crate::wimpy_capnp::Role::Worker,
            Role::Admin => crate::wimpy_capnp::Role::Admin,
            Role::Client => crate::wimpy_capnp::Role::Client,
        }
    }
}

impl From<crate::wimpy_capnp::Role> for Role {
    fn from(role: crate::wimpy_capnp::Role) -> Self {
        match role {
            crate::wimpy_capnp::Role::Master => Role::Master,
            crate::wimpy_capnp::Role::Worker => Role::Worker,
            crate::wimpy_capnp::Role::Admin => Role::Admin,
            crate::wimpy_capnp::Role::Client => Role::Client,
        }
    }
}

/// A role name that is none of `master`, `worker`, `admin`, `client`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected master, worker, admin or client")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn every_role_reads_back_from_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
