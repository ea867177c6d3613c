//! `TestApp`: a database, the simulator and the service, wired for one test.

use std::time::Duration;

use booking_sync::app::Service;
use booking_sync::checker::Convergence;
use booking_sync::config::Config;
use booking_sync::demo;
use booking_sync::sim::{SimConfig, SimControl, SimHandle, Simulator};
use booking_sync::store::PgStore;
use tokio::time::Instant;

use super::db::TestDb;

/// Knobs a test may turn.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Room mailboxes.
    pub rooms: usize,
    /// User mailboxes.
    pub users: usize,
    /// Work queue capacity.
    pub queue_capacity: usize,
    /// The simulator's authentication (default: none).
    pub sim_auth: booking_sync::sim::auth::AuthConfig,
    /// Length of one simulated ConnectionTimeout minute.
    pub sim_minute: Duration,
    /// Share of updates for which the simulator sends a duplicate event.
    pub duplicate_event_ratio: f64,
    /// Seed of the simulator.
    pub seed: u64,
    /// The PostgreSQL server to create the test database on (default: the shared one).
    pub admin_url: Option<String>,
    /// The simulator's per-account limits.
    pub sim_limits: booking_sync::sim::limits::LimitsConfig,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            rooms: 3,
            users: 5,
            queue_capacity: 64,
            sim_auth: booking_sync::sim::auth::AuthConfig::default(),
            sim_minute: Duration::from_secs(60),
            duplicate_event_ratio: 0.1,
            seed: 7,
            admin_url: None,
            sim_limits: booking_sync::sim::limits::LimitsConfig::default(),
        }
    }
}

/// One test's world.
pub struct TestApp {
    /// The simulator (kept alive for the test).
    pub sim: SimHandle,
    /// Its in-process control API.
    pub control: SimControl,
    /// The service's configuration.
    pub config: Config,
    /// A store on the test database.
    pub store: PgStore,
    /// The running service, when started.
    pub service: Option<Service>,
    /// The database (dropped last).
    pub db: TestDb,
}

impl TestApp {
    /// Database, simulator and seeded rooms, without the service.
    pub async fn prepare(options: TestOptions) -> Self {
        super::init_logging();
        let db = match &options.admin_url {
            Some(admin) => TestDb::create_on(admin).await,
            None => TestDb::create().await,
        };
        let sim = Simulator::start(SimConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            rooms: options.rooms,
            users: options.users,
            seed: options.seed,
            heartbeat_interval: Duration::from_secs(2),
            auth: options.sim_auth,
            minute: options.sim_minute,
            duplicate_event_ratio: options.duplicate_event_ratio,
            limits: options.sim_limits,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let control = sim.control();
        let mut config = Config::for_tests(&db.url, &sim.ews_url());
        config.database = db.config();
        config.http.listen = "127.0.0.1:0".parse().expect("address");
        config.pipeline.queue_capacity = options.queue_capacity;
        config.pipeline.coalesce_window = Duration::from_millis(100);
        config.subscriptions.heartbeat_timeout = Duration::from_secs(10);
        config.sync.room_refresh_interval = Duration::from_millis(500);
        let store = PgStore::connect(&config.database)
            .await
            .expect("store connects");
        store.migrate().await.expect("migrations apply");
        demo::seed(&store, &control)
            .await
            .expect("rooms and users seeded");
        Self {
            sim,
            control,
            config,
            store,
            service: None,
            db,
        }
    }

    /// Database, simulator, rooms, and the service with every room's initial sync done.
    pub async fn spawn(options: TestOptions) -> Self {
        let mut app = Self::prepare(options).await;
        app.start().await;
        app
    }

    /// Starts the service in process and waits for every room's initial sync.
    pub async fn start(&mut self) {
        let service = Service::start(&self.config).await.expect("service starts");
        let started = Instant::now();
        let rooms = self.store.enabled_rooms().await.expect("rooms").len();
        loop {
            let (enabled, complete) = service.rooms.counts();
            if enabled == rooms && complete == rooms {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "initial sync incomplete: {complete} of {rooms}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.service = Some(service);
    }

    /// Stops the in-process service (graceful, like SIGTERM).
    pub async fn stop(&mut self) {
        if let Some(service) = self.service.take() {
            service.shutdown(Duration::from_secs(5)).await;
        }
    }

    /// Waits until the database matches the simulator (or `timeout` passes) and
    /// returns the last comparison.
    pub async fn wait_converged(&self, timeout: Duration) -> Convergence {
        let started = Instant::now();
        loop {
            let result = demo::compare(&self.store, &self.control, &self.config)
                .await
                .expect("comparison runs");
            let idle = self
                .service
                .as_ref()
                .is_none_or(|service| service.queue.is_idle());
            if (result.converged() && idle) || started.elapsed() > timeout {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
