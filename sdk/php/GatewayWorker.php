<?php

/**
 * Gateway worker SDK for PHP: standard library only, PHP >= 8.1.
 *
 * A worker registers functions and bus subscriptions, then runs: it connects to
 * the Unix socket in GATEWAY_SOCKET and speaks the gateway's worker protocol
 * (docs/worker-protocol.md, version 2). Calls run one at a time; with
 * `concurrency: N` the gateway may send N calls ahead, which then wait in the socket
 * (pipelining: more calls/s, but a call may wait behind a slow one; several instances
 * spread calls better). It answers heartbeats,
 * reconnects when the socket drops, and on `stop` or SIGTERM (with pcntl)
 * finishes the call in flight and exits 0.
 *
 * Example (`php title.php`, started by the gateway):
 *
 *     require __DIR__ . '/GatewayWorker.php';
 *
 *     $worker = new GatewayWorker();
 *     $worker->function('title', fn (array $args) => ucwords($args['name']));
 *     $worker->function('hello', function (array $args, GatewayContext $ctx) use ($worker) {
 *         $sum = $worker->call('python.add', ['a' => 1, 'b' => 2]); // through the gateway
 *         return ['hello' => $args['name'], 'sum' => $sum, 'left' => $ctx->remaining()];
 *     });
 *     $worker->subscribe('orders/#', function (GatewayEvent $event) use ($worker) {
 *         $worker->log('info', 'order event', ['topic' => $event->topic]);
 *     });
 *     $worker->run();
 */

declare(strict_types=1);

/** A call made with GatewayWorker::call failed; $type says how (timeout, ...). */
final class GatewayCallError extends RuntimeException
{
    public function __construct(
        public readonly string $type,
        string $message,
        public readonly ?string $remoteTraceback = null,
    ) {
        parent::__construct("$type: $message");
    }
}

/** What a function learns about its call: deadline (microtime) and meta. */
final class GatewayContext
{
    public function __construct(
        public readonly int|string $id,
        public readonly float $deadline,
        public readonly array $meta,
    ) {
    }

    /** Seconds left before the caller gives up. */
    public function remaining(): float
    {
        return max(0.0, $this->deadline - microtime(true));
    }
}

/** A bus message delivered to a subscription. */
final class GatewayEvent
{
    public readonly string $topic;
    public readonly string $payload;
    public readonly array $meta;

    public function __construct(array $frame)
    {
        $this->topic = $frame['topic'];
        $this->meta = $frame['meta'] ?? [];
        $this->payload = ($frame['encoding'] ?? 'utf8') === 'base64'
            ? base64_decode($frame['payload'], true)
            : $frame['payload'];
    }

    public function json(): mixed
    {
        return json_decode($this->payload, true, 512, JSON_THROW_ON_ERROR);
    }
}

final class GatewayWorker
{
    private const PROTOCOL = 2;
    private const JSON_OUT = JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
        | JSON_PRESERVE_ZERO_FRACTION;

    public readonly string $name;
    public readonly int $instance;
    private ?string $socketPath;
    /** @var array<string, callable> */
    private array $functions = [];
    /** @var array<string, callable> */
    private array $subscriptions = [];
    /** @var resource|null */
    private $sock = null;
    private int $nextId = 0;
    private int $maxFrame = 16777216;
    private bool $stopping = false;
    /** Frames that arrived while a call out waited for its result. */
    private array $backlog = [];
    private ?GatewayContext $current = null;

    public function __construct(
        ?string $socketPath = null,
        ?string $name = null,
        ?int $instance = null,
        private float $reconnectTimeout = 10.0,
        private int $concurrency = 1,
    ) {
        $this->socketPath = $socketPath ?? (getenv('GATEWAY_SOCKET') ?: null);
        $this->name = $name ?? (getenv('GATEWAY_WORKER') ?: 'worker');
        $this->instance = $instance ?? (int) (getenv('GATEWAY_INSTANCE') ?: 0);
    }

    /**
     * Registers $fn(array|mixed $args[, GatewayContext $ctx]) as function $name. A result JSON
     * cannot carry (NAN, INF, a binary string, a resource, a cycle) fails that call with the
     * error type bad_result.
     */
    public function function(string $name, callable $fn): static
    {
        $this->functions[$name] = $fn;
        return $this;
    }

    /** $handler(GatewayEvent $event) gets every bus message matching $filter. */
    public function subscribe(string $filter, callable $handler): static
    {
        $this->subscriptions[$filter] = $handler;
        if ($this->sock !== null) {
            $this->send(['type' => 'subscribe', 'filter' => $filter]);
        }
        return $this;
    }

    /**
     * Calls $function ("owner.name" or "worker:owner.name") through the gateway and returns
     * its result; throws GatewayCallError (of type bad_arguments, before anything is sent, for
     * arguments JSON cannot carry). Inside a function the timeout is capped by what is left of
     * that call's deadline.
     */
    public function call(string $function, mixed $args = null, ?float $timeout = null, array $meta = []): mixed
    {
        $timeout ??= 30.0;
        if ($this->current !== null) {
            $timeout = min($timeout, $this->current->remaining());
        }
        $id = 'p' . ++$this->nextId;
        try {
            $body = json_encode([
                'type' => 'call', 'id' => $id, 'function' => $function, 'args' => $args,
                'timeout' => (int) ($timeout * 1000), 'meta' => (object) $meta,
            ], self::JSON_OUT);
        } catch (JsonException $error) {
            throw new GatewayCallError(
                'bad_arguments',
                "the arguments of $function cannot be sent as JSON: {$error->getMessage()}",
            );
        }
        $this->write($body);
        $deadline = microtime(true) + $timeout + 0.5;
        while (true) {
            $frame = $this->read($deadline);
            if ($frame === null) {
                $this->send(['type' => 'cancel', 'id' => $id]);
                throw new GatewayCallError('timeout', "$function did not answer within {$timeout} s");
            }
            if ($frame['type'] === 'result' && $frame['id'] === $id) {
                if ($frame['ok']) {
                    return $frame['value'] ?? null;
                }
                $error = $frame['error'];
                throw new GatewayCallError($error['type'], $error['message'], $error['traceback'] ?? null);
            }
            if ($frame['type'] === 'ping') {
                $this->send(['type' => 'pong', 'id' => $frame['id']]);
            } else {
                $this->backlog[] = $frame;
            }
        }
    }

    /**
     * Publishes on the bus: a string as it is (binary as base64), anything else as JSON. Throws
     * a JsonException, and sends nothing, for a payload JSON cannot carry.
     */
    public function publish(string $topic, mixed $payload, array $meta = []): void
    {
        try {
            $text = is_string($payload) ? $payload : json_encode($payload, self::JSON_OUT);
        } catch (JsonException $error) {
            throw new JsonException(
                "the payload published on '$topic' cannot be sent as JSON: {$error->getMessage()}",
                $error->getCode(),
                $error,
            );
        }
        $utf8 = preg_match('//u', $text) === 1;
        $frame = [
            'type' => 'publish', 'topic' => $topic,
            'payload' => $utf8 ? $text : base64_encode($text), 'encoding' => $utf8 ? 'utf8' : 'base64',
        ];
        if ($meta) {
            $frame['meta'] = $meta;
        }
        $this->send($frame);
    }

    /**
     * Logs through the gateway's log (level: debug, info, warning, error). Throws a
     * JsonException, and sends nothing, for fields JSON cannot carry.
     */
    public function log(string $level, string $message, array $fields = []): void
    {
        try {
            $this->send(['type' => 'log', 'level' => $level, 'message' => $message, 'fields' => (object) $fields]);
        } catch (JsonException $error) {
            throw new JsonException(
                "the fields of log '$message' cannot be sent as JSON: {$error->getMessage()}",
                $error->getCode(),
                $error,
            );
        }
    }

    /** Connects, serves until `stop`/SIGTERM, then exits with 0. */
    public function run(): never
    {
        if ($this->socketPath === null) {
            fwrite(STDERR, "GatewayWorker: GATEWAY_SOCKET is not set (is this run by the gateway?)\n");
            exit(1);
        }
        if (function_exists('pcntl_async_signals')) {
            pcntl_async_signals(true);
            pcntl_signal(SIGTERM, function () {
                $this->stopping = true;
            }, false);
        }
        $this->connect();
        while (true) {
            // Calls that arrived during a call out run first; after `stop` only those remain.
            if ($this->backlog) {
                $this->dispatch(array_shift($this->backlog));
                continue;
            }
            if ($this->stopping) {
                break;
            }
            try {
                $frame = $this->read();
            } catch (RuntimeException $error) {
                if ($this->stopping) {
                    break;
                }
                fwrite(STDERR, "GatewayWorker: connection lost ({$error->getMessage()}); reconnecting\n");
                $this->close();
                $this->connect();
                continue;
            }
            if ($frame !== null) {
                $this->dispatch($frame);
            }
        }
        $this->close();
        exit(0);
    }

    private function dispatch(array $frame): void
    {
        switch ($frame['type']) {
            case 'call':
                $this->runCall($frame);
                break;
            case 'ping':
                $this->send(['type' => 'pong', 'id' => $frame['id']]);
                break;
            case 'event':
                $handler = $this->subscriptions[$frame['filter'] ?? ''] ?? null;
                if ($handler !== null) {
                    try {
                        $handler(new GatewayEvent($frame));
                    } catch (Throwable $error) {
                        fwrite(STDERR, "GatewayWorker: subscription {$frame['filter']} failed: $error\n");
                    }
                }
                break;
            case 'stop':
                $this->stopping = true;
                break;
            case 'error':
                fwrite(STDERR, "GatewayWorker: gateway error: {$frame['message']}\n");
                break;
        }
    }

    private function runCall(array $frame): void
    {
        $name = $frame['function'];
        // The caller's deadline (epoch ms in meta) counts the time the call waited in the socket.
        $deadline = isset($frame['meta']['deadline'])
            ? (float) $frame['meta']['deadline'] / 1000
            : microtime(true) + ($frame['timeout'] ?? 30000) / 1000;
        if ($deadline <= microtime(true)) {
            return; // waited past its deadline in the socket: the caller has given up
        }
        $this->current = new GatewayContext(
            $frame['id'],
            $deadline,
            $frame['meta'] ?? [],
        );
        try {
            $fn = $this->functions[$name] ?? throw new OutOfBoundsException("{$this->name} has no function '$name'");
            $value = $fn($frame['args'] ?? null, $this->current);
        } catch (Throwable $error) {
            $this->write($this->failure($frame['id'], get_class($error), $error->getMessage(), sprintf(
                "%s:%d\n%s",
                $error->getFile(),
                $error->getLine(),
                $error->getTraceAsString(),
            )));
            return;
        } finally {
            $this->current = null;
        }
        try {
            $body = json_encode(['type' => 'result', 'id' => $frame['id'], 'ok' => true, 'value' => $value], self::JSON_OUT);
        } catch (JsonException $error) {
            $body = $this->failure(
                $frame['id'],
                'bad_result',
                "{$this->name}.$name returned a value JSON cannot carry: {$error->getMessage()}",
            );
        }
        $this->write($body);
    }

    /** A failed `result`; invalid UTF-8 in its texts is replaced by U+FFFD. */
    private function failure(int|string $id, string $type, string $message, ?string $traceback = null): string
    {
        $error = ['type' => $type, 'message' => $message];
        if ($traceback !== null) {
            $error['traceback'] = $traceback;
        }
        return json_encode(
            ['type' => 'result', 'id' => $id, 'ok' => false, 'error' => $error],
            self::JSON_OUT | JSON_INVALID_UTF8_SUBSTITUTE,
        );
    }

    private function connect(): void
    {
        $giveUpAt = microtime(true) + $this->reconnectTimeout;
        $delay = 0.05;
        while (true) {
            $sock = @stream_socket_client("unix://{$this->socketPath}", $errno, $errstr, 5.0);
            if ($sock !== false) {
                break;
            }
            if (microtime(true) + $delay > $giveUpAt) {
                fwrite(STDERR, "GatewayWorker: cannot connect to {$this->socketPath}: $errstr\n");
                exit(1);
            }
            usleep((int) ($delay * 1e6));
            $delay = min($delay * 2, 1.0);
        }
        // Unbuffered reads, so that stream_select sees every byte not yet read.
        stream_set_read_buffer($sock, 0);
        $this->sock = $sock;
        $this->send([
            'type' => 'hello', 'protocol' => self::PROTOCOL, 'worker' => $this->name,
            'instance' => $this->instance, 'pid' => getmypid(),
            // The gateway gives each instance it spawns a secret; without it the hello is refused.
            'secret' => (string) getenv('GATEWAY_SECRET'),
            'functions' => array_keys($this->functions), 'subscriptions' => array_keys($this->subscriptions),
            'concurrency' => $this->concurrency, 'codecs' => ['json'],
        ]);
        $welcome = $this->read();
        if (($welcome['type'] ?? '') !== 'welcome') {
            fwrite(STDERR, "GatewayWorker: the gateway refused this worker: " . ($welcome['message'] ?? '?') . "\n");
            exit(1);
        }
        $this->maxFrame = $welcome['maxFrame'] ?? $this->maxFrame;
    }

    /** The next frame; null when $deadline (microtime) passes or SIGTERM interrupts the wait. */
    private function read(?float $deadline = null): ?array
    {
        $header = $this->readExact(4, $deadline);
        if ($header === null) {
            return null;
        }
        $length = unpack('N', $header)[1];
        if ($length > $this->maxFrame) {
            throw new RuntimeException("frame of $length bytes exceeds the maximum {$this->maxFrame}");
        }
        $body = $this->readExact($length, null) ?? throw new RuntimeException('interrupted in a frame');
        return json_decode($body, true, 512, JSON_THROW_ON_ERROR);
    }

    private function readExact(int $length, ?float $deadline): ?string
    {
        $buffer = '';
        while (strlen($buffer) < $length) {
            if ($buffer === '') {
                $read = [$this->sock];
                $none = null;
                $wait = $deadline === null ? null : max(0.0, $deadline - microtime(true));
                $ready = $wait === null
                    ? @stream_select($read, $none, $none, null)
                    : @stream_select($read, $none, $none, (int) $wait, (int) (fmod($wait, 1.0) * 1e6));
                if ($ready === false) { // interrupted by a signal
                    if ($this->stopping) {
                        return null;
                    }
                    continue;
                }
                if ($ready === 0) {
                    return null;
                }
            }
            $chunk = @fread($this->sock, $length - strlen($buffer));
            if ($chunk === false || $chunk === '') {
                if (feof($this->sock)) {
                    throw new RuntimeException('the gateway closed the connection');
                }
                continue;
            }
            $buffer .= $chunk;
        }
        return $buffer;
    }

    private function send(array $frame): void
    {
        $this->write(json_encode($frame, self::JSON_OUT));
    }

    private function write(string $body): void
    {
        $data = pack('N', strlen($body)) . $body;
        while ($data !== '' && $this->sock !== null) {
            $written = @fwrite($this->sock, $data);
            if ($written === false || $written === 0) {
                return; // the reader sees the broken connection and reconnects
            }
            $data = substr($data, $written);
        }
    }

    private function close(): void
    {
        if ($this->sock !== null) {
            fclose($this->sock);
            $this->sock = null;
        }
    }
}
