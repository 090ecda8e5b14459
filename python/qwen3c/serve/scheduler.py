"""The scheduler of `qwen3c serve`: which sequences step together (continuous batching).

It knows nothing of HTTP. Jobs (one prompt -> one sequence of tokens) come in through
submit(); each runs in a slot (a qwen3c.Session of the shared Model); every step() is one
Model.forward_batch over all running slots -- a decode token for each one that is generating,
and prefill chunks for the ones that are still reading their prompt, up to `step_tokens`
tokens in all -- so every weight matrix is read once per step for everyone. Then each slot
that got logits samples its next token and reports it through its job's `emit` callback.

    sched = Scheduler(model, n_slots=4)
    job = Job(prompt_ids, max_tokens=64, sampler=qwen3c.Sampler.greedy(), emit=print)
    sched.submit(job)            # QueueFullError when `max_queue` jobs already wait
    sched.start()                # a thread that calls step() while there is work
    ...; sched.cancel(job)       # the slot is free before the next step's forward pass
    sched.stop()

Prefix reuse: a job goes to the free slot whose cache shares the longest prefix with its
prompt (a conversation's next turn lands where its previous turn ran), and when another slot
holds a longer prefix (a shared system prompt), its keys and values are copied instead of
being computed again (Session.copy_prefix_from). Either way only the rest is prefilled.
Qwen3.5's recurrent state continues only from where a slot holds one (Session.rewind_point), so
prefill chunks end at the checkpoint marks generate() uses, and a checkpoint is saved there.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import ContextOverflowError, Qwen3cError
from ..generate import TextAssembler, checkpoint_marks
from ..session import common_prefix

#: a shorter shared prefix than this is recomputed rather than copied from another slot
MIN_COPY = 16


class QueueFullError(Qwen3cError):
    """Every slot is busy and the waiting queue is full."""


# ---- what a job reports ------------------------------------------------------------------------

@dataclass
class TokenEvent:
    """One sampled token. text: what it completes of the output ("" while a multi-byte
    character or a possible stop string is held back). logprob: (logprob of the token, [(id,
    logprob), ...] of the top alternatives) when the job asked for logprobs, else None."""
    token: int
    text: str
    logprob: Optional[tuple] = None


@dataclass
class DoneEvent:
    """The end of a job. finish_reason: "stop" (end-of-turn token or stop string), "length"
    (max_tokens or a full context), "cancelled" or "error" (then `error` says what)."""
    finish_reason: str
    text: str = ""             # the last text held back (flushed)
    n_prompt: int = 0
    n_cached: int = 0          # prompt tokens found in (or copied into) the slot's cache
    n_completion: int = 0      # tokens sampled, the end-of-turn token included
    error: Optional[str] = None


@dataclass(eq=False)
class Job:
    """One sequence to generate: the prompt token ids and how to sample after them.

    constraint: None or an object with mask() -> token bitmask (int32 words) or None, and
    accept(token) (constrained decoding, see serve/constraints.py). ignore_eos: keep going past
    the end-of-turn token (fixed-length benchmarks; not with a constraint). logprobs: None, or
    how many top alternatives to report with each token (0: only the token's own).
    emit(event): called from the scheduler thread for every TokenEvent and the final DoneEvent.
    """
    prompt: list
    max_tokens: int
    sampler: object
    stop: tuple = ()
    ignore_eos: bool = False
    logprobs: Optional[int] = None
    constraint: object = None
    emit: Callable = lambda event: None
    # filled while it runs
    tokens: list = field(default_factory=list)
    n_cached: int = 0
    finish_reason: Optional[str] = None
    cancelled: bool = False
    t_submit: float = 0.0
    t_first_token: Optional[float] = None
    _session: object = None
    _pos: int = 0              # prompt tokens + fed tokens in the cache
    _next: Optional[int] = None  # the sampled token to feed next step
    _marks: frozenset = frozenset()  # prompt positions to checkpoint a recurrent state at
    _text: object = None


def log_softmax(logits) -> np.ndarray:
    """Natural-log probabilities of float32 logits, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def top_logprobs(logits, token: int, k: int) -> tuple:
    """(logprob of token, [(id, logprob), ...] of the k most likely, descending, ties by id)."""
    lp = log_softmax(logits)
    top = []
    if k > 0:
        idx = np.argpartition(-lp, k - 1)[:k] if k < lp.size else np.arange(lp.size)
        top = [(int(i), float(lp[i])) for i in sorted(idx.tolist(), key=lambda i: (-lp[i], i))]
    return float(lp[token]), top


class Scheduler:
    """Continuous batching of jobs over `n_slots` sessions of `model` (see the module doc).

    n_ctx / kv_cache: each slot's KV cache (None: the model's). max_queue: jobs that may wait
    for a slot. step_tokens: most tokens per forward pass (decode tokens first, then prefill
    chunks)."""

    def __init__(self, model, n_slots: int = 4, n_ctx: Optional[int] = None, max_queue: int = 64,
                 step_tokens: int = 256, kv_cache: Optional[str] = None):
        if n_slots < 1 or max_queue < 0 or step_tokens < 1:
            raise ValueError("n_slots and step_tokens must be >= 1, max_queue >= 0")
        self.model = model
        self.slots = [model.session(n_ctx=n_ctx, kv_cache=kv_cache) for _ in range(n_slots)]
        self.n_ctx = self.slots[0].n_ctx
        self.max_queue = max_queue
        self.step_tokens = max(step_tokens, n_slots)
        self.eog = frozenset(model.special_tokens.eog or ())
        self._eog_ids = np.array(sorted(self.eog), dtype=np.int64)
        self.queue: collections.deque = collections.deque()
        self.running: list = []          # jobs in slots, in admission order
        self._cv = threading.Condition()
        self._thread = None
        self._stopping = False
        # counters for /metrics
        self.n_finished = collections.Counter()
        self.n_prompt_tokens = 0
        self.n_cached_tokens = 0
        self.n_generated = 0
        self.n_steps = 0
        self._recent = collections.deque(maxlen=12)  # [second, tokens generated in it]

    # ---- submitting and cancelling (any thread) -------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a job. ContextOverflowError when its prompt leaves no room to generate,
        QueueFullError when max_queue jobs already wait (the job is not queued then)."""
        if len(job.prompt) < 1:
            raise ValueError("the prompt is empty")
        if len(job.prompt) >= self.n_ctx:
            raise ContextOverflowError(
                f"the prompt has {len(job.prompt)} tokens but the context holds {self.n_ctx} "
                "(and one more is needed to answer)", len(job.prompt), self.n_ctx)
        with self._cv:
            free = len(self.slots) - len(self.running)
            if len(self.queue) - free >= self.max_queue:
                raise QueueFullError(f"all {len(self.slots)} slots are busy and "
                                     f"{len(self.queue)} requests are waiting")
            job.t_submit = time.perf_counter()
            job._text = TextAssembler(self.model, job.stop)
            self.queue.append(job)
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """Stop a job: it leaves the queue, or frees its slot before the next forward pass."""
        job.cancelled = True
        with self._cv:
            self._cv.notify()

    # ---- the loop ----------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="qwen3c-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; jobs still queued or running end as "cancelled"."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for job in list(self.queue) + list(self.running):
            job.cancelled = True
        self._drop_cancelled()

    def _loop(self):
        while True:
            with self._cv:
                while not self._stopping and not self.queue and not self.running:
                    self._cv.wait()
                if self._stopping:
                    return
            self.step()

    def step(self) -> bool:
        """One scheduling step: drop cancelled jobs, fill free slots from the queue, run one
        batched forward pass over the running jobs, sample. Returns False when idle."""
        self._drop_cancelled()
        self._admit()
        if not self.running:
            return False
        items, fed = [], []
        budget = self.step_tokens
        for job in self.running:                  # decode: one token each
            if job._next is not None:
                items.append((job._session, [job._next], job._pos, True))
                fed.append((job, 1))
                budget -= 1
        for job in self.running:                  # prefill chunks with what is left
            if job._next is None and budget > 0:
                ends = [m for m in job._marks if m > job._pos] + [len(job.prompt)]
                n = min(budget, min(ends) - job._pos)
                last = job._pos + n == len(job.prompt)
                items.append((job._session, job.prompt[job._pos:job._pos + n], job._pos, last))
                fed.append((job, n))
                budget -= n
        try:
            out = self.model.forward_batch(items)
        except Exception as e:  # not expected after the checks: fail these jobs, keep serving
            for job, _ in fed:
                job._session.reset()
                self._finish(job, "error", error=f"forward pass failed: {e}")
            return True
        self.n_steps += 1
        for (job, n), logits in zip(fed, out):
            job._pos += n
            if job._pos in job._marks:
                job._session.checkpoint()
            if logits is not None:
                self._sample(job, logits)
        return True

    # ---- inside a step -------------------------------------------------------------------------
    def _drop_cancelled(self):
        with self._cv:
            gone = [j for j in self.queue if j.cancelled]
            for j in gone:
                self.queue.remove(j)
        for j in gone + [j for j in self.running if j.cancelled]:
            self._finish(j, "cancelled")

    def _admit(self):
        with self._cv:
            while self.queue and len(self.running) < len(self.slots):
                job = self.queue.popleft()
                busy = {id(j._session) for j in self.running}
                free = [s for s in self.slots if id(s) not in busy]
                # the free slot whose cache shares the most with the prompt; another slot's
                # longer prefix (a shared system prompt) is copied rather than recomputed
                lcp = {id(s): common_prefix(s._tokens, job.prompt) for s in self.slots}
                slot = max(free, key=lambda s: lcp[id(s)])
                donor = max(self.slots, key=lambda s: lcp[id(s)])
                n_copy = donor.rewind_point(min(lcp[id(donor)], len(job.prompt) - 1))
                if n_copy >= lcp[id(slot)] + MIN_COPY and donor.kv_cache == slot.kv_cache:
                    slot.copy_prefix_from(donor, n_copy)
                job._session = slot
                job._pos = job.n_cached = slot.reusable_prefix(job.prompt)
                job._marks = frozenset(checkpoint_marks(slot, job.prompt, job._pos))
                job.sampler.reset()
                self.running.append(job)
                self.n_prompt_tokens += len(job.prompt)
                self.n_cached_tokens += job.n_cached

    def _sample(self, job: Job, logits: np.ndarray):
        try:
            mask = job.constraint.mask() if job.constraint is not None else None
            lg = logits
            if job.ignore_eos and job.constraint is None and self._eog_ids.size:
                lg = logits.copy()
                lg[self._eog_ids] = -np.inf
            tok = job.sampler.sample(lg, mask)
            if job.constraint is not None:
                job.constraint.accept(tok)
            lp = top_logprobs(logits, tok, job.logprobs) if job.logprobs is not None else None
        except Exception as e:  # a grammar or sampler failure ends this job only
            self._finish(job, "error", error=str(e))
            return
        now = time.perf_counter()
        if job.t_first_token is None:
            job.t_first_token = now
        job.tokens.append(tok)
        self.n_generated += 1
        sec = int(now)
        if self._recent and self._recent[-1][0] == sec:
            self._recent[-1][1] += 1
        else:
            self._recent.append([sec, 1])
        if tok in self.eog and not (job.ignore_eos and job.constraint is None):
            job.emit(TokenEvent(tok, "", lp))
            self._finish(job, "stop")
            return
        text = job._text.feed(tok)
        job.emit(TokenEvent(tok, text, lp))
        if job._text.stopped:
            self._finish(job, "stop")
        elif len(job.tokens) >= job.max_tokens or job._pos >= job._session.n_ctx:
            self._finish(job, "length")
        else:
            job._next = tok

    def _finish(self, job: Job, reason: str, error: Optional[str] = None):
        with self._cv:
            if job in self.running:
                self.running.remove(job)
            if job.finish_reason is not None:
                return
            job.finish_reason = reason
            self.n_finished[reason] += 1
        rest = job._text.flush() if job._text is not None and reason in ("stop", "length") else ""
        job.emit(DoneEvent(reason, rest, len(job.prompt), job.n_cached, len(job.tokens), error))

    # ---- numbers for /metrics -----------------------------------------------------------------
    def stats(self) -> dict:
        now = int(time.perf_counter())
        with self._cv:
            finished = dict(self.n_finished)
        return dict(
            slots=len(self.slots), busy_slots=len(self.running), queue_length=len(self.queue),
            finished=finished, prompt_tokens=self.n_prompt_tokens,
            cached_prompt_tokens=self.n_cached_tokens, generated_tokens=self.n_generated,
            steps=self.n_steps,
            # the ten whole seconds before this one (a copy: the scheduler thread appends)
            decode_tokens_per_second=sum(n for t, n in list(self._recent) if now - 10 <= t < now) / 10.0)
