"""PBT for A2C agents (examples/rl_a2c.py): PBT against random search, and the batched population's speed.

1. PBT against random search at equal environment steps, on CartPole-v1 and Acrobot-v1, on the
   local engine (gymnasium's environments, 2 workers) and the vectorized engine (torch
   environments): the same members, initial hyperparameters and intervals, random search being
   the same spec with no exploit (`Experiment.baseline()`); best and mean final return over seeds.
2. Environment steps per second of the vectorized engine (one torch thread) against the local
   engine (2 workers, one thread each) at 32 and 128 members on the CPU, each run whole (start-up, store writes and checkpoints
   included); with CUDA, the vectorized engine with 1,024 members there.
3. The time of one batched update (8 steps of 8 environments per member, then one A2C step) for
   P members over the same update for one member, and over one update of the gymnasium agent.
4. The off-policy agent (examples/rl_td3.py, TD3 on Pendulum-v1, vectorized engine): PBT with
   exploit copying the source's replay buffer (copy_buffer=True) and keeping the copy's own
   (copy_buffer=False), against random search at equal environment steps, seed by seed; best and
   mean final return.
5. PPO (examples/rl_ppo.py) on CartPole-v1 and Pendulum-v1, vectorized engine: PBT against random
   search at equal environment steps, seeds 0-4; best and mean final return.
6. PPO's environment steps per second, vectorized engine (one thread) against the local engine
   (2 workers), at 128 members on CartPole-v1, each run whole.

    python benchmarks/rl.py [--seeds 3] [--steps 20] [--members 8] [--td3-seeds 5] [--td3-steps 10]
                            [--ppo-seeds 5] [--sections 123456] [--smoke]

`--smoke` runs every section at toy sizes, the CUDA ones on the CPU (the test suite runs it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
sys.path.insert(0, EXAMPLES)

import torch  # noqa: E402

import rl_a2c  # noqa: E402
import rl_td3  # noqa: E402
import rl_ppo  # noqa: E402
from poptrain.engines import Local, Vectorized  # noqa: E402
from poptrain.experiment import load_spec  # noqa: E402

TASKS = {"CartPole-v1": "rl_cartpole", "Acrobot-v1": "rl_acrobot"}
ENGINES = {"local": Local(workers=2), "vectorized": Vectorized(threads=1)}  # one thread each: see main()
SHARDS = 2  # the sharded population of the speed sections: one shard per core of the 2-core machine
SPEED_ENGINES = {**ENGINES, "sharded": Vectorized(shards=SHARDS, threads=1)}
HPARAMS = {"lr": 1e-3, "ent_coef": 0.01, "gae_lambda": 0.95}
PPO_TASKS = {"CartPole-v1": "rl_ppo_cartpole", "Pendulum-v1": "rl_ppo_pendulum"}
PPO_STEPS = {"CartPole-v1": 20, "Pendulum-v1": 30}  # intervals per member, as in the examples


def spec(task: str, folder: str, tag: str, examples: dict[str, str] = TASKS, **sizes: int):
    """The task's example spec stored under `folder`, with the given population, steps and seed."""
    return load_spec(os.path.join(EXAMPLES, f"{examples[task]}.toml"), name=f"{examples[task]}-{tag}",
                     storage=f"sqlite:///{folder}/{examples[task]}-{tag}.db", **sizes)


def pbt_vs_random(task: str, engine: str, seeds: int, members: int, steps: int, folder: str,
                  examples: dict[str, str] = TASKS, label: str | None = None) -> None:
    """PBT and random search on one task and engine, seed by seed; how often PBT's mean final return won."""
    wins = 0
    for seed in range(seeds):
        exp = spec(task, folder, f"{engine}-{seed}", examples, population=members, steps=steps, seed=seed)
        pbt = exp.run(engine=ENGINES[engine]).members().score
        random = exp.baseline().run(engine=ENGINES[engine]).members().score
        wins += pbt.mean() > random.mean()
        print(f"    seed {seed}: PBT best {pbt.max():7.1f} mean {pbt.mean():7.1f} | "
              f"random search best {random.max():7.1f} mean {random.mean():7.1f}", flush=True)
    print(f"  {label or task} on the {engine} engine: PBT's mean final return beat random search's in {wins} of {seeds} "
          f"seeds", flush=True)


def env_steps_per_second(task: str, engine: str, members: int, steps: int, folder: str, device: str = "cpu",
                         examples: dict[str, str] = TASKS) -> float:
    """One whole run's environment steps per second (start-up, store and checkpoints included)."""
    tag = f"speed-{engine}-{device}-{members}-{torch.get_num_threads()}"
    exp = spec(task, folder, tag, examples, population=members, steps=steps)
    chosen = SPEED_ENGINES[engine] if device == "cpu" else Vectorized(device=device, threads=1)
    start = time.perf_counter()
    exp.run(engine=chosen)
    return members * steps * rl_a2c.INTERVAL_STEPS / (time.perf_counter() - start)


def speed(task: str, sizes: list[int], steps: int, folder: str, cuda_sizes: list[int], cuda: str | None) -> None:
    """The vectorized engine against the local engine (2 workers) at each size, and on CUDA if present."""
    local = 0.0
    for size in sizes:
        local = env_steps_per_second(task, "local", size, steps, folder)
        rate = env_steps_per_second(task, "vectorized", size, steps, folder)
        sharded = env_steps_per_second(task, "sharded", size, steps, folder)
        print(f"  {task}, {size:4d} members: local (2 workers) {local:9.0f} env-steps/s; vectorized (1 thread) "
              f"{rate:9.0f} = {rate / local:5.1f}x; vectorized, {SHARDS} shards {sharded:9.0f} = {sharded / local:5.1f}x",
              flush=True)
    if cuda:
        for size in cuda_sizes:
            rate = env_steps_per_second(task, "vectorized", size, steps, folder, device=cuda)
            print(f"  {task}, {size:4d} members on {cuda}: {rate:10.0f} env-steps/s = {rate / local:.1f}x the local "
                  f"engine at {sizes[-1]} members", flush=True)


def update_time(make, repeats: int) -> float:
    """Median seconds of one `update()` (after one to warm up)."""
    agent = make()
    agent.update()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        agent.update()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def batched_update(cls: type, size: int, device: str):
    """A population of `size` whose update() draws its uniforms first, as one step of train() does."""
    population = cls([HPARAMS] * size, list(range(size)), device=device)
    noise = [n[:, 0] for n in population._interval_noise(1)]
    population.update = lambda: cls.update(population, *noise)
    return population


def step_costs(sizes: list[int], device: str, repeats: int) -> None:
    """One batched update of P members against one of a single member (batched, and the gymnasium agent)."""
    for task, single_cls, batched_cls in (("CartPole-v1", rl_a2c.CartPole, rl_a2c.CartPolePopulation),
                                           ("Acrobot-v1", rl_a2c.Acrobot, rl_a2c.AcrobotPopulation)):
        gym_agent = update_time(lambda: single_cls(HPARAMS, 0), repeats)
        one = update_time(lambda: batched_update(batched_cls, 1, device), repeats)
        print(f"  {task} on {device}: one update of the gymnasium agent {gym_agent * 1000:.2f} ms, of one batched "
              f"member {one * 1000:.2f} ms")
        for size in sizes:
            t = update_time(lambda: batched_update(batched_cls, size, device), repeats)
            print(f"    {size:5d} members in one batched update: {t * 1000:8.2f} ms = {t / one:6.1f}x one batched member, "
                  f"{t / gym_agent:6.1f}x one gymnasium agent ({size * gym_agent / t:6.1f}x faster than {size} of them)",
                  flush=True)


OFFPOLICY = {"copy_buffer=True": "rl_td3:Pendulum", "copy_buffer=False": "rl_td3:PendulumOwnBuffer"}


def offpolicy_vs_random(seeds: int, members: int, steps: int, folder: str) -> None:
    """TD3 on Pendulum-v1: PBT copying buffers, PBT keeping the copy's own, random search; how often each PBT won."""
    wins = dict.fromkeys(OFFPOLICY, 0)
    for seed in range(seeds):
        finals = {}
        for setting, trainable in OFFPOLICY.items():
            exp = load_spec(os.path.join(EXAMPLES, "rl_pendulum.toml"), name=f"rl_pendulum-{seed}-{trainable[7:]}",
                            storage=f"sqlite:///{folder}/rl_pendulum.db", trainable=trainable, population=members,
                            steps=steps, seed=seed)
            finals[setting] = exp.run(engine=ENGINES["vectorized"]).members().score
        # random search: no exploit, so where the buffer goes does not matter
        random = exp.baseline().run(engine=ENGINES["vectorized"]).members().score
        for setting, pbt in finals.items():
            wins[setting] += pbt.mean() > random.mean()
        print(f"    seed {seed}: " + " | ".join(f"PBT {k} best {v.max():7.1f} mean {v.mean():7.1f}"
                                               for k, v in finals.items())
              + f" | random search best {random.max():7.1f} mean {random.mean():7.1f}", flush=True)
    for setting in OFFPOLICY:
        print(f"  Pendulum-v1, TD3, PBT with {setting}: its mean final return beat random search's in "
              f"{wins[setting]} of {seeds} seeds", flush=True)


def ppo_vs_random(seeds: int, members: int, steps: dict[str, int], folder: str) -> None:
    """Section 5: PBT against random search for PPO on CartPole and Pendulum, vectorized engine, seed by seed."""
    for task in PPO_TASKS:
        print(f"  PPO on {task}, {members} members x {steps[task]} intervals of {rl_ppo.INTERVAL_STEPS} env steps:")
        pbt_vs_random(task, "vectorized", seeds, members, steps[task], folder, PPO_TASKS, f"PPO on {task}")


def ppo_speed(members: int, steps: int, folder: str) -> None:
    """Section 6: PPO's environment steps per second, vectorized engine against local engine, whole runs."""
    local = env_steps_per_second("CartPole-v1", "local", members, steps, folder, examples=PPO_TASKS)
    rate = env_steps_per_second("CartPole-v1", "vectorized", members, steps, folder, examples=PPO_TASKS)
    sharded = env_steps_per_second("CartPole-v1", "sharded", members, steps, folder, examples=PPO_TASKS)
    print(f"  PPO on CartPole-v1, {members:4d} members: local (2 workers) {local:9.0f} env-steps/s; vectorized "
          f"(1 thread) {rate:9.0f} = {rate / local:5.1f}x; vectorized, {SHARDS} shards {sharded:9.0f} = "
          f"{sharded / local:5.1f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="intervals of 2,048 environment steps per member")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--td3-seeds", type=int, default=5, help="seeds of the off-policy section (0, 1, ...)")
    parser.add_argument("--td3-steps", type=int, default=10, help="intervals of 1,000 environment steps per member")
    parser.add_argument("--sections", default="123456", help="which sections to run, by number (default: all)")
    parser.add_argument("--ppo-seeds", type=int, default=5, help="seeds of the PPO section (0, 1, ...)")
    parser.add_argument("--smoke", action="store_true", help="every section at toy sizes, the CUDA ones on the CPU")
    args = parser.parse_args()
    # one thread for the vectorized engine (each local worker gets one too): on this 2-core machine shared with
    # other jobs, two threads made the batched step 5-8 times slower, not faster
    torch.set_num_threads(1)
    cuda = "cuda" if torch.cuda.is_available() else "cpu" if args.smoke else None
    speed_sizes, cuda_sizes, speed_steps, repeats = [32, 128], [1024], 2, 20
    ppo_steps, ppo_members = dict(PPO_STEPS), 128
    if args.smoke:
        args.seeds, args.steps, args.members = 1, 2, 2
        speed_sizes, cuda_sizes, speed_steps, repeats = [2, 4], [8], 1, 2
        args.td3_seeds, args.td3_steps = 1, 3  # one ready point (ready every 2 intervals)
        # intervals of 100 steps, learning from the second: 200 batched updates a run
        rl_td3.Pendulum.interval_steps = rl_td3.Pendulum.learning_starts = 100
        rl_td3.Pendulum.batch_size = 32
        args.ppo_seeds, ppo_steps, ppo_members = 1, {task: 2 for task in PPO_TASKS}, 2
        for cls in (rl_ppo.CartPolePopulation, rl_ppo.PendulumPopulation):
            cls.epochs = 1
    print(f"cpus={os.cpu_count()} torch={torch.__version__} cuda={torch.cuda.is_available()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        if "1" in args.sections:
            print(f"1. PBT vs random search, {args.members} members x {args.steps} intervals of {rl_a2c.INTERVAL_STEPS} "
                  f"env steps, {args.seeds} seeds (final return: the mean of each member's last episodes):")
            for task in TASKS:
                for engine in ENGINES:
                    pbt_vs_random(task, engine, args.seeds, args.members, args.steps, folder)
        if "2" in args.sections:
            print(f"2. env-steps/s, {speed_steps} intervals per member, whole runs:")
            speed("CartPole-v1", speed_sizes, speed_steps, folder, cuda_sizes, cuda)
        if "3" in args.sections:
            print("3. one batched update / one single-agent update:")
            step_costs(speed_sizes, "cpu", repeats)
            if cuda:
                step_costs(cuda_sizes, cuda, repeats)
        if "4" in args.sections:
            print(f"4. TD3 on Pendulum-v1, PBT vs random search, {args.members} members x {args.td3_steps} intervals "
                  f"of {rl_td3.Pendulum.interval_steps} env steps, seeds 0-{args.td3_seeds - 1} (final return: the "
                  f"mean of each member's last {rl_td3.Pendulum.window} episodes):")
            offpolicy_vs_random(args.td3_seeds, args.members, args.td3_steps, folder)
        if "5" in args.sections:
            print(f"5. PPO, PBT vs random search, vectorized engine, seeds 0-{args.ppo_seeds - 1} (final return: the mean "
                  f"of each member's last {rl_ppo.WINDOW} episodes):")
            ppo_vs_random(args.ppo_seeds, args.members, ppo_steps, folder)
        if "6" in args.sections:
            print(f"6. PPO env-steps/s, {speed_steps} intervals per member, whole runs:")
            ppo_speed(ppo_members, speed_steps, folder)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
