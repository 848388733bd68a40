from pathlib import Path

from engine.scenarios.generate import DEFAULT_DIR, generate


def test_shipped_scenario_is_exactly_the_generators_output(tmp_path: Path) -> None:
    generate(tmp_path)
    shipped = sorted(p.name for p in DEFAULT_DIR.iterdir() if p.is_file())
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped
    for name in shipped:
        assert (tmp_path / name).read_bytes() == (DEFAULT_DIR / name).read_bytes(), name
