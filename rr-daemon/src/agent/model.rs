//! Calico's resources as the agent reads them from etcd v3 (`DATASTORE_TYPE=etcdv3`): JSON
//! of `projectcalico.org/v3` objects under `/calico/resources/v3/projectcalico.org/<plural>/
//! <name>`, and IPAM block affinities under `/calico/ipam/v2/host/<node>/ipv4|ipv6/block/
//! <cidr>`.

/// Every resource the agent uses, by etcd key, as last put.
#[derive(Clone, Debug, Default)]
pub struct Datastore {}

/// A resource that cannot be used: logged with its name and field, and skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {field}: {message}")]
pub struct ResourceError {
    /// The etcd key of the resource.
    pub key: String,
    /// The field at fault (`spec.peerIP`), or empty for the whole object.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Datastore {
    /// An empty datastore.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a put (`Some(value)`) or a delete (`None`) of `key`. Keys outside the
    /// layout the agent reads are ignored (`Ok`); a value that cannot be used leaves the
    /// key absent and says why.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), ResourceError> {
        let _ = (key, value);
        todo!("agentmodel")
    }
}
