<?php

/**
 * Example PHP worker. Functions: title (upper-cases words), echo, add, fail (throws, to show
 * the traceback a caller gets), relay (calls the function it is given through the gateway), sleep. Every message published on demo/in/<rest> is
 * republished on demo/out/<rest>.
 */

declare(strict_types=1);

require __DIR__ . '/../../../sdk/php/GatewayWorker.php';

// Calls run one after another; the gateway may send as many ahead as the config's concurrency.
$worker = new GatewayWorker(concurrency: (int) (getenv('GATEWAY_CONCURRENCY') ?: 1));
$worker
    ->function('title', fn (array $args) => ['title' => ucwords($args['name'] ?? ''), 'pid' => getmypid()])
    ->function('echo', fn (mixed $args) => $args)
    ->function('add', fn (array $args) => $args['a'] + $args['b'])
    ->function('fail', function (mixed $args): never {
        throw new InvalidArgumentException('cannot handle ' . json_encode($args));
    })
    ->function('relay', fn (array $args) => $worker->call($args['function'], $args['args'] ?? null))
    ->function('sleep', function (array $args): array {
        usleep((int) (($args['seconds'] ?? 1) * 1e6));
        return ['slept' => $args['seconds'] ?? 1];
    })
    ->subscribe('demo/in/#', function (GatewayEvent $event) use ($worker) {
        $rest = explode('/', $event->topic, 3)[2] ?? '';
        $worker->publish("demo/out/$rest", $event->payload, ['via' => $worker->name]);
    });
$worker->run();
