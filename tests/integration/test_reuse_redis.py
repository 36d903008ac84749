"""The shared answers of llm/reuse.py on a real Redis: the lead is one holder's, a published
answer reaches that lead's followers only, a lead frees itself when its holder dies, and the
cache expires."""

from __future__ import annotations

import time

import redis

from tidegate.llm.reuse import Answer, RedisAnswers

ANSWER = Answer(text="hi", input_tokens=3, output_tokens=2, model="gpt-4o-mini",
                provider="openai", lane="openai:gpt-4o-mini", cost_nanos=1234, unpriced=False,
                simulated=True)


def test_lead_follow_publish(redis_url: str) -> None:
    one, two = (RedisAnswers(redis.Redis.from_url(redis_url)) for _ in range(2))
    led, token = one.lead("k", ttl_s=30)
    assert led and token
    assert two.lead("k", ttl_s=30) == (False, token)  # a second caller follows
    assert two.answer_of("k", token) == (None, True)  # still in flight
    one.publish("k", token, ANSWER)
    assert two.answer_of("k", token) == (ANSWER, False)
    led_again, fresh = two.lead("k", ttl_s=30)  # done: a later call leads its own
    assert led_again and fresh != token
    two.publish("k", fresh, None)  # a failed leader shares nothing
    assert one.answer_of("k", fresh) == (None, False)


def test_a_dead_leaders_lead_expires_and_a_slow_one_frees_nobody_elses(redis_url: str) -> None:
    answers = RedisAnswers(redis.Redis.from_url(redis_url))
    _, old = answers.lead("k", ttl_s=0.2)
    time.sleep(0.3)
    assert answers.answer_of("k", old) == (None, False)  # its followers take over
    led, new = answers.lead("k", ttl_s=30)
    assert led
    answers.publish("k", old, None)  # the slow old leader finishing must not free the new one
    assert answers.answer_of("k", new) == (None, True)


def test_the_cache_keeps_answers_for_their_ttl(redis_url: str) -> None:
    answers = RedisAnswers(redis.Redis.from_url(redis_url))
    assert answers.cached("c") is None
    answers.keep("c", ANSWER, ttl_s=0.3)
    assert answers.cached("c") == ANSWER
    time.sleep(0.4)
    assert answers.cached("c") is None
