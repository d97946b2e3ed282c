# The error paths of bench/errors.lua in Python's asyncio (or uvloop):
#   python3 bench/errors.py [error|cancel|timeout] [--uvloop]
import asyncio, sys, time

ROUNDS = 3

def measure(fn, n):
    fn(max(1, n // 10))
    return sorted(fn(n) for _ in range(ROUNDS))[ROUNDS // 2]

async def main(which, peer):
    loop = asyncio.get_running_loop()

    def error_round(n):
        t0 = time.perf_counter()
        for _ in range(n):
            ValueError("x")
        return time.perf_counter() - t0

    async def cancel_round(n):
        t0 = time.perf_counter()
        for _ in range(n):
            t = asyncio.create_task(asyncio.sleep(10))
            await asyncio.sleep(0)
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass
        return time.perf_counter() - t0

    async def timeout_round(n):
        t0 = time.perf_counter()
        for _ in range(n):
            try:
                await asyncio.wait_for(loop.create_future(), 0)
            except asyncio.TimeoutError:
                pass
        return time.perf_counter() - t0

    async def ameasure(fn, n):
        await fn(max(1, n // 10))
        return sorted([await fn(n) for _ in range(ROUNDS)])[ROUNDS // 2]

    for name, fn, n, unit in (("error", error_round, 100000, "errors/s"),
                              ("cancel", cancel_round, 20000, "tasks/s"),
                              ("timeout", timeout_round, 20000, "timeouts/s")):
        if which and which != name:
            continue
        dt = await ameasure(fn, n) if asyncio.iscoroutinefunction(fn) else measure(fn, n)
        print(f"RESULT bench={name} peer={peer} n={n} secs={dt:.4f} rate={n / dt:.0f} unit={unit}",
              flush=True)

args = [a for a in sys.argv[1:] if not a.startswith("--")]
if "--uvloop" in sys.argv:
    import uvloop
    uvloop.install()
    peer = "uvloop"
else:
    peer = "asyncio"
asyncio.run(main(args[0] if args else None, peer))
