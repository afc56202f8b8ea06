"""The differential fuzz of tests/fuzz.py on a fixed seed's first cases (run it by hand for
many more: ``python tests/fuzz.py --cases 5000 --seed 1``)."""
import fuzz

CASES = 200


def test_fuzz_agrees_with_the_loop_oracles_and_torch():
    failures = fuzz.run(CASES, seed=0)
    report = "\n".join(f"{case}\n  " + "\n  ".join(problems) for case, problems in failures[:5])
    assert not failures, f"{len(failures)} of {CASES} cases disagree:\n{report}"
