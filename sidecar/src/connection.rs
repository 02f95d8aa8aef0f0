//! Connection to a single Redis or to a Redis Cluster, behind one type that runs commands and
//! scripts.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

use crate::error::Error;

/// Time allowed to open a connection to Redis.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// Time allowed for one Redis command or script to reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reconnect attempts after a lost connection, before a command fails.
const RECONNECT_RETRIES: usize = 3;

/// Maximum pause between reconnect attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// Location of the sidecar's Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server, by URL such as `redis://127.0.0.1:6379`.
    Single(String),
    /// A Redis Cluster, by the URLs of some of its nodes; the client discovers the rest.
    Cluster(Vec<String>),
}

/// A handle that opens its connection on first use and is cheap to clone.
#[derive(Clone)]
pub enum Connector {
    /// A connection manager, which reconnects after a lost connection.
    Single(ConnectionManager),
    /// A cluster client and the connection it opened, which follows slot moves and reconnects.
    Cluster {
        client: Arc<ClusterClient>,
        connection: Arc<OnceCell<ClusterConnection>>,
    },
}

impl Connector {
    /// Creates a connector for `target` without connecting yet. Also returns the address to
    /// log, without any password.
    pub fn new(target: &RedisTarget) -> Result<(Connector, String), Error> {
        match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let address = client.get_connection_info().addr().to_string();
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(RECONNECT_RETRIES)
                    .set_max_delay(RECONNECT_MAX_DELAY);
                let manager = ConnectionManager::new_lazy_with_config(client, config)?;
                Ok((Connector::Single(manager), address))
            }
            RedisTarget::Cluster(urls) => {
                let client = ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(CONNECTION_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(RECONNECT_RETRIES as u32)
                    .build()?;
                let address = format!("cluster of {} seed nodes", urls.len());
                let connection = Arc::new(OnceCell::new());
                let client = Arc::new(client);
                Ok((Connector::Cluster { client, connection }, address))
            }
        }
    }

    /// Returns a connection, opening the cluster connection on the first call.
    pub async fn connection(&self) -> Result<Connection, Error> {
        match self {
            Connector::Single(manager) => Ok(Connection::Single(manager.clone())),
            Connector::Cluster { client, connection } => {
                let opened = connection
                    .get_or_try_init(|| client.get_async_connection())
                    .await?;
                Ok(Connection::Cluster(opened.clone()))
            }
        }
    }
}

/// One connection of either kind, usable wherever redis-rs takes a connection.
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}
