//! The nodes that answer key requests: a worker, for the keys it owns at
//! the epoch the caller routed by, and the master, whose proxy routes by
//! itself (and ignores the epoch). Either takes a request alone (`get`,
//! `put`, `delete`) or many at once (`batch`); both come back as the same
//! [`KeyAnswer`]s, so callers handle one kind of answer however it went.

use std::future::Future;

use wimpy_schema::batch::{KeyAnswer, KeyRequest, read_answers, write_requests};
use wimpy_schema::wimpy_capnp::{master, worker};

/// A node that answers key requests.
pub trait KeyPeer: Clone + 'static {
    /// Sends `requests` as one batch; the answers come in their order.
    fn send_batch<'a>(
        &'a self,
        epoch: u64,
        requests: &'a [KeyRequest],
    ) -> impl Future<Output = capnp::Result<Vec<KeyAnswer>>> + 'a;

    /// Sends `request` in a message of its own.
    fn send_one<'a>(
        &'a self,
        epoch: u64,
        request: &'a KeyRequest,
    ) -> impl Future<Output = capnp::Result<KeyAnswer>> + 'a;
}

/// Implements [`KeyPeer`] for an interface whose `get`, `put`, `delete` and
/// `batch` take the same parameters, plus the epoch where `$epoch` names its
/// setter (the master's take none).
macro_rules! key_peer {
    ($client:ty $(, $set_epoch:ident)?) => {
        impl KeyPeer for $client {
            fn send_batch<'a>(
                &'a self,
                #[allow(unused_variables)] epoch: u64,
                requests: &'a [KeyRequest],
            ) -> impl Future<Output = capnp::Result<Vec<KeyAnswer>>> + 'a {
                let mut req = self.batch_request();
                $(req.get().$set_epoch(epoch);)?
                write_requests(req.get().init_ops(requests.len() as u32), requests);
                async move {
                    let resp = req.send().promise.await?;
                    read_answers(resp.get()?.get_results()?, requests.len())
                }
            }

            fn send_one<'a>(
                &'a self,
                #[allow(unused_variables)] epoch: u64,
                request: &'a KeyRequest,
            ) -> impl Future<Output = capnp::Result<KeyAnswer>> + 'a {
                async move {
                    match request {
                        KeyRequest::Get(key) => {
                            let mut req = self.get_request();
                            req.get().set_key(key);
                            $(req.get().$set_epoch(epoch);)?
                            KeyAnswer::from_get(req.send().promise.await?.get()?.get_result()?)
                        }
                        KeyRequest::Put(key, value) => {
                            let mut req = self.put_request();
                            req.get().set_key(key);
                            req.get().set_value(value);
                            $(req.get().$set_epoch(epoch);)?
                            KeyAnswer::from_write(req.send().promise.await?.get()?.get_result()?)
                        }
                        KeyRequest::Delete(key) => {
                            let mut req = self.delete_request();
                            req.get().set_key(key);
                            $(req.get().$set_epoch(epoch);)?
                            KeyAnswer::from_delete(req.send().promise.await?.get()?.get_result()?)
                        }
                    }
                }
            }
        }
    };
}

key_peer!(worker::Client, set_epoch);
key_peer!(master::Client);
