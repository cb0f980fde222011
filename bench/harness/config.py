"""Every number a benchmark run uses, in one place: the full run and the smoke run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["SECTIONS", "SERVERS", "BenchConfig"]

#: The report's sections, in the order they run.
SECTIONS = ("capacity", "memory", "rooms", "connrate", "slow")
#: Every server the benchmark knows; streamchat is the one under test.
SERVERS = ("streamchat", "socketio", "pysocketio", "aiohttp")


@dataclass(frozen=True)
class BenchConfig:
    servers: tuple[str, ...] = SERVERS
    sections: tuple[str, ...] = SECTIONS
    #: The streamchat room everyone joins in the one-room sections (a sample streamer).
    room: str = "sablesignal"
    #: Chat text length in characters (~100-byte messages).
    text_bytes: int = 100
    #: "raw" (bench/loadgen/src/rawsocket.js) or "ws" (the ws package).
    transport: str = "raw"
    #: Loopback source addresses the load generator spreads its connections over.
    source_ips: int = 4

    # 1. fan-out capacity
    capacity_clients: int = 1000
    capacity_seconds: float = 6.0
    capacity_warmup: float = 1.0
    capacity_drain: float = 3.0
    capacity_p99_ms: float = 50.0
    capacity_start_rate: float = 25.0
    capacity_min_rate: float = 3.0
    capacity_max_rate: float = 6400.0
    #: Bisection stops when the failing rate is within this factor of the passing one.
    capacity_precision: float = 1.15
    #: A failed step is run again when other processes used more than this much CPU.
    capacity_noise_cpu_percent: float = 20.0

    # 2. memory per idle connection
    memory_connections: int = 10_000

    # 3. many rooms
    rooms_count: int = 200
    rooms_subscribers: int = 25
    rooms_rate: float = 1000.0
    rooms_seconds: float = 10.0
    rooms_databases: tuple[str, ...] = ("sqlite", "postgres")
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"

    # 4. connection rate
    connrate_connections: int = 5000
    connrate_concurrency: int = 200

    # 5. slow clients
    slow_clients: int = 1000
    slow_stalled: int = 10
    slow_rate: float = 100.0
    #: The stalled run must outlast the kernel's buffers: a stalled socket first fills
    #: the server's send buffer (tcp_wmem max, 4 MiB here), then the outbox.
    slow_seconds: float = 70.0
    slow_baseline_seconds: float = 15.0
    slow_text_bytes: int = 480
    slow_max_queued_bytes: int = 256 * 1024
    #: How long stalled clients, reading again, have to see their disconnection.
    slow_wait: float = 15.0
    slow_servers: tuple[str, ...] = ("streamchat",)

    #: Extra environment for the streamchat server (e.g. to try a setting).
    streamchat_env: dict[str, str] = field(default_factory=dict)
    #: Record the streamchat server with py-spy, one profile per section, in the logs.
    profile: bool = False

    @property
    def accounts_needed(self) -> int:
        """Subscriber sessions the template database must hold."""
        return max(
            self.capacity_clients,
            self.memory_connections,
            self.rooms_count * self.rooms_subscribers,
            self.connrate_connections,
            self.slow_clients,
        )

    @property
    def publishers_needed(self) -> int:
        return max(1, self.rooms_count)

    def smoke(self) -> BenchConfig:
        """Tiny numbers that exercise every section in a few seconds."""
        return replace(
            self,
            capacity_clients=20,
            capacity_seconds=1.0,
            capacity_warmup=0.2,
            capacity_drain=1.0,
            capacity_start_rate=10.0,
            capacity_max_rate=20.0,
            capacity_precision=2.5,
            memory_connections=50,
            rooms_count=4,
            rooms_subscribers=5,
            rooms_rate=20.0,
            rooms_seconds=1.0,
            rooms_databases=("sqlite",),
            connrate_connections=100,
            connrate_concurrency=20,
            slow_clients=40,
            slow_stalled=2,
            slow_rate=20.0,
            slow_seconds=1.5,
            slow_baseline_seconds=1.0,
            slow_max_queued_bytes=4096,
            slow_wait=1.0,
            source_ips=1,
        )
