"""Topologies built in Python or loaded from TOML, their errors, and the kind registry."""

from __future__ import annotations

import importlib
import pickle
import re
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorml import registry
from actorml.errors import UnknownKind
from actorml.topology import (
    ActorSpec,
    ClusterSpec,
    NodeSpec,
    Restart,
    Strategy,
    SupervisorSpec,
    Topology,
    TopologyError,
    check_topology,
    register_section,
)
from actorml.topology import sections as topology_sections

PINGPONG = """\
[cluster]
name = "pingpong"
transport = "tcp"
base_port = 7000
ask_timeout_s = 2

[cluster.supervisor]
strategy = "one_for_all"

[[node]]
name = "ponger"

[node.supervisor]
strategy = "rest_for_one"
max_restarts = 5

[[node.actor]]
name = "ponger"
kind = "echo"
mailbox_size = 64

[node.actor.args]
delay_s = 0.0

[[node]]
name = "pinger"
address = "tcp://127.0.0.1:7001"

[[node.actor]]
name = "pinger"
kind = "mypkg.pingers:Pinger"
restart = "transient"
args = { count = 3, peers = ["ponger"] }
"""


def pingpong() -> Topology:
    """The Python twin of PINGPONG."""
    return Topology(
        cluster=ClusterSpec(
            name="pingpong",
            transport="tcp",
            base_port=7000,
            ask_timeout_s=2.0,
            supervisor=SupervisorSpec(strategy=Strategy.ONE_FOR_ALL, within_s=10.0),
        ),
        nodes=(
            NodeSpec(
                name="ponger",
                supervisor=SupervisorSpec(strategy="rest_for_one", max_restarts=5),
                actors=[ActorSpec("ponger", "echo", mailbox_size=64, args={"delay_s": 0.0})],
            ),
            NodeSpec(
                name="pinger",
                address="tcp://127.0.0.1:7001",
                actors=(
                    ActorSpec(
                        "pinger",
                        "mypkg.pingers:Pinger",
                        restart="transient",
                        args={"count": 3, "peers": ("ponger",)},
                    ),
                ),
            ),
        ),
    )


def exact(message: str) -> str:
    """A pattern matching exactly ``message``."""
    return "^" + re.escape(message) + "$"


def load(text: str) -> Topology:
    return Topology.from_toml_string(text)


MINIMAL = '[cluster]\nname = "c"\n\n[[node]]\nname = "n"\n'


@pytest.fixture(name="kinds")
def _kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty registry, so built-ins registered elsewhere do not leak into messages."""
    monkeypatch.setattr(registry, "_groups", {})


@pytest.fixture(name="sections")
def _sections(monkeypatch: pytest.MonkeyPatch) -> None:
    """No extra sections registered, whatever other modules register."""
    monkeypatch.setattr(topology_sections, "_sections", {})


class TestRoundTrip:
    def test_python_equals_toml_file(self, tmp_path: Path) -> None:
        """A topology built in Python equals the same one loaded from a file."""
        path = tmp_path / "topology.toml"
        path.write_text(PINGPONG)
        assert Topology.from_toml(path) == pingpong()

    def test_to_toml_loads_back_equal(self, tmp_path: Path) -> None:
        """to_toml writes a file that loads back equal, through from_toml too."""
        t = pingpong()
        assert Topology.from_toml_string(t.to_toml()) == t
        path = tmp_path / "out.toml"
        path.write_text(t.to_toml())
        assert Topology.from_toml(path) == t

    def test_to_toml_uses_block_tables(self) -> None:
        """to_toml writes actors as [[node.actor]] blocks, supervisor before actors."""
        text = pingpong().to_toml()
        assert text.count("[[node.actor]]") == 2
        assert text.index("[node.supervisor]") < text.index("[[node.actor]]")
        assert "[node.actor.args]" in text

    def test_minimal_file_gets_defaults(self) -> None:
        """Omitted keys take the documented defaults."""
        t = load(MINIMAL)
        assert t == Topology(ClusterSpec("c"), (NodeSpec("n"),))
        assert t.cluster.transport == "ipc"
        assert t.cluster.recv_max_size == 268435456
        assert t.nodes[0].supervisor == SupervisorSpec()
        assert t.extra == {}

    def test_cluster_supervisor_defaults_survive_partial_table(self) -> None:
        """A partial [cluster.supervisor] keeps the cluster's default within_s of 10."""
        t = load('[cluster]\nname = "c"\n[cluster.supervisor]\nmax_restarts = 1\n' + MINIMAL[21:])
        assert t.cluster.supervisor == SupervisorSpec(max_restarts=1, within_s=10.0)

    def test_python_inputs_are_normalised(self) -> None:
        """Lists become tuples, enum strings become enums, ints become floats."""
        node = NodeSpec("n", actors=[ActorSpec("a", "echo", restart="temporary")])
        sup = SupervisorSpec(strategy="one_for_all", within_s=2)
        assert isinstance(node.actors, tuple)
        assert node.actors[0].restart is Restart.TEMPORARY
        assert sup.strategy is Strategy.ONE_FOR_ALL
        assert isinstance(sup.within_s, float)

    def test_args_are_copied_and_compare_by_value(self) -> None:
        """Args are a private plain copy: later edits to the caller's dict change nothing."""
        args: dict[str, Any] = {"xs": (1, 2), "inner": {"k": [1]}}
        spec = ActorSpec("a", "echo", args=args)
        args["xs"] = ()
        assert spec.args == {"xs": [1, 2], "inner": {"k": [1]}}
        assert spec == ActorSpec("a", "echo", args={"inner": {"k": [1]}, "xs": [1, 2]})

    def test_specs_hash_and_pickle(self) -> None:
        """Specs are hashable and survive pickling equal."""
        t = pingpong()
        assert hash(t) == hash(pingpong())
        assert pickle.loads(pickle.dumps(load(PINGPONG))) == t

    def test_from_dict_matches_to_dict(self) -> None:
        """from_dict(to_dict()) is the identity, and to_dict uses the file's key names."""
        t = pingpong()
        d = t.to_dict()
        assert d["node"][0]["actor"][0]["kind"] == "echo"
        assert "address" not in d["node"][0]
        assert d["cluster"]["supervisor"]["strategy"] == "one_for_all"
        assert Topology.from_dict(d) == t

    def test_lookup_by_name(self) -> None:
        """node() and actor() find specs by name, and name what exists when they cannot."""
        t = pingpong()
        assert t.node("pinger").address == "tcp://127.0.0.1:7001"
        node, actor = t.actor("ponger")
        assert (node.name, actor.kind) == ("ponger", "echo")
        with pytest.raises(KeyError, match=r"no node named 'x' in cluster 'pingpong' \(nodes: "):
            t.node("x")
        with pytest.raises(KeyError, match=r"no actor named 'x' .*\(actors: ponger, pinger\)"):
            t.actor("x")


class TestErrors:
    def test_missing_key_points_at_table_header(self) -> None:
        """A missing required key is reported at the line of its table header."""
        text = MINIMAL + '[[node.actor]]\nname = "a"\nkind = "echo"\n\n[[node.actor]]\nname = "b"\n'
        msg = (
            "<string>:10: node[0].actor[1].kind: missing required key "
            "(expected a registered kind or 'pkg.module:Class')"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            load(text)

    def test_wrong_type(self) -> None:
        """A value of the wrong type names the expected type and the value given."""
        msg = "<string>:3: cluster.mailbox_size: expected an integer, got string '64'"
        with pytest.raises(TopologyError, match=exact(msg)):
            load('[cluster]\nname = "c"\nmailbox_size = "64"\n')

    def test_unknown_option_suggests_closest(self) -> None:
        """An unknown key suggests the closest valid one and lists them all."""
        msg = (
            "<string>:3: cluster.trasport: unknown option (did you mean 'transport'?) "
            "(valid options: ask_timeout_s, base_port, heartbeat_deadline_s, "
            "heartbeat_interval_s, host, insecure, log_level, mailbox_size, name, prewarm, "
            "ready_timeout_s, recv_max_size, run_dir, supervisor, tls_dir, transport)"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            load('[cluster]\nname = "c"\ntrasport = "tcp"\n')

    def test_unknown_option_in_actor(self) -> None:
        """Unknown actor keys are reported with the actor's valid options."""
        text = MINIMAL + '[[node.actor]]\nname = "a"\nkind = "echo"\nmailbox = 3\n'
        msg = (
            "<string>:9: node[0].actor[0].mailbox: unknown option (did you mean 'mailbox_size'?) "
            "(valid options: args, kind, mailbox_size, name, restart, shutdown_timeout_s)"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            load(text)

    def test_unknown_top_level_table(self, sections: None) -> None:
        """An unknown top-level table is an unknown option, naming the sections there are."""
        msg = (
            "<string>:6: protocl: unknown option (did you mean 'protocol'?) "
            "(valid options: cluster, data, job, model, node, optimizer, pipeline, protocol, "
            "schedule)"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            load(MINIMAL + '[protocl]\nkind = "ssp"\n')

    def test_bad_enum(self) -> None:
        """An unknown strategy lists the valid ones, at the key's line."""
        text = MINIMAL + '[node.supervisor]\nstrategy = "one_for_none"\n'
        msg = (
            "<string>:7: node[0].supervisor.strategy: unknown strategy 'one_for_none' "
            "(expected one of: one_for_all, one_for_one, rest_for_one)"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            load(text)

    def test_bad_enum_in_dotted_key(self) -> None:
        """A dotted key (supervisor.strategy = ...) is located on its own line."""
        text = MINIMAL + 'supervisor.strategy = "none"\n'
        with pytest.raises(TopologyError, match=r"^<string>:6: node\[0\]\.supervisor\.strategy: "):
            load(text)

    def test_duplicate_node(self) -> None:
        """A repeated node name points at the repeat and names the first."""
        text = '[cluster]\nname = "c"\n[[node]]\nname = "w1"\n[[node]]\nname = "w2"\n'
        text += '[[node]]\nname = "w1"\n'
        msg = "<string>:8: node[2].name: duplicate node name 'w1' (also node[0])"
        with pytest.raises(TopologyError, match=exact(msg)):
            load(text)

    def test_duplicate_actor_across_nodes(self) -> None:
        """Actor names are unique across the whole cluster, not just per node."""
        text = MINIMAL + '[[node.actor]]\nname = "a"\nkind = "echo"\n'
        text += '[[node]]\nname = "m"\n[[node.actor]]\n"name" = "a"\nkind = "echo"\n'
        msg = "<string>:12: node[1].actor[0].name: duplicate actor name 'a' (also node[0].actor[0])"
        with pytest.raises(TopologyError, match=exact(msg)):
            load(text)

    def test_toml_syntax_error(self) -> None:
        """A TOML syntax error reports tomllib's message and line."""
        msg = "<string>:3: invalid toml: invalid value (column 8)"
        with pytest.raises(TopologyError, match=exact(msg)):
            load('[cluster]\nname = "c"\nhost = localhost\n')

    def test_missing_cluster_and_nodes(self) -> None:
        """A file without [cluster] or without [[node]] says which table is missing."""
        with pytest.raises(TopologyError, match=r"^<string>: cluster: missing required table"):
            load('[[node]]\nname = "n"\n')
        with pytest.raises(TopologyError, match=r"^<string>: node: missing required table"):
            load('[cluster]\nname = "c"\n')
        with pytest.raises(TopologyError, match=r"^<string>:1: node: expected at least one node"):
            load('node = []\n[cluster]\nname = "c"\n')

    def test_invalid_name(self) -> None:
        """Names must start with a letter and hold no spaces or slashes."""
        msg = (
            "<string>:4: node[0].name: invalid name 'w 1' (expected a letter followed by "
            "letters, digits, '_', '.' or '-')"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            load('[cluster]\nname = "c"\n[[node]]\nname = "w 1"\n')

    def test_range_and_cross_field_checks(self) -> None:
        """Values out of range, and a heartbeat deadline below the interval, are refused."""
        with pytest.raises(TopologyError, match=r"^<string>:3: cluster\.base_port: expected an "):
            load('[cluster]\nname = "c"\nbase_port = 70000\n' + MINIMAL[21:])
        msg = (
            "<string>:3: cluster.heartbeat_deadline_s: expected a number greater than "
            "heartbeat_interval_s (0.5), got float 0.2"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            load('[cluster]\nname = "c"\nheartbeat_deadline_s = 0.2\n' + MINIMAL[21:])

    def test_table_expected(self) -> None:
        """A scalar where a table or array of tables belongs is named as such."""
        with pytest.raises(TopologyError, match=r"^<string>:6: node\[0\]\.actor: expected an arr"):
            load(MINIMAL + "actor = 3\n")
        msg = "<string>:3: cluster.supervisor: expected a table, got string 'x'"
        with pytest.raises(TopologyError, match=exact(msg)):
            load('[cluster]\nname = "c"\nsupervisor = "x"\n' + MINIMAL[21:])

    def test_scanner_skips_multiline_values(self) -> None:
        """Keys inside multi-line strings and arrays do not shift the reported lines."""
        text = MINIMAL + (
            '[[node.actor]]\nname = "a"\nkind = "echo"\n[node.actor.args]\n'
            'doc = """\nmailbox_size = 1\n"""\nxs = [\n  1,\n]\nbad = 1\n'
            "[[node.actor]]\nname = 'b'\nkind = 'e'\nmailbox_size = -1\n"
        )
        with pytest.raises(TopologyError, match=r"^<string>:20: node\[0\]\.actor\[1\]\.mailbox"):
            load(text)

    def test_error_attributes_and_format_without_line(self) -> None:
        """Errors carry source, line, key and problem; from_dict errors have no line."""
        with pytest.raises(TopologyError) as info:
            Topology.from_dict({"cluster": {"name": "c", "log_level": "loud"}, "node": []})
        err = info.value
        assert (err.source, err.line, err.key) == ("<dict>", None, "cluster.log_level")
        assert err.problem == (
            "unknown log level 'loud' (expected one of: debug, error, info, warning)"
        )
        assert str(err) == f"<dict>: cluster.log_level: {err.problem}"
        assert pickle.loads(pickle.dumps(err)).line is None

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A missing file is a TopologyError naming the path, not a traceback."""
        path = tmp_path / "nope.toml"
        with pytest.raises(
            TopologyError, match=exact(f"{path}: cannot read file (no such file or directory)")
        ):
            Topology.from_toml(path)

    def test_python_constructors_name_the_field(self) -> None:
        """Building specs in Python raises TypeError/ValueError naming the field and value."""
        with pytest.raises(
            TypeError, match=exact("mailbox_size: expected an integer, got string '8'")
        ):
            ActorSpec("a", "echo", mailbox_size="8")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"^strategy: unknown strategy 'one_for_none' \("):
            SupervisorSpec(strategy="one_for_none")
        with pytest.raises(
            ValueError, match=exact("node[1].name: duplicate node name 'n' (also node[0])")
        ):
            Topology(ClusterSpec("c"), (NodeSpec("n"), NodeSpec("n")))
        with pytest.raises(TypeError, match=r"^args: value of 'f' is not a toml value \(got "):
            ActorSpec("a", "echo", args={"f": print})
        with pytest.raises(ValueError, match=r"^address: invalid address 'localhost:1' "):
            NodeSpec("n", address="localhost:1")
        with pytest.raises(ValueError, match=r"^kind: invalid kind 'a b' "):
            ActorSpec("a", "a b")


class TestSections:
    def test_registered_section_is_validated_and_kept(self, sections: None) -> None:
        """A registered top-level table is passed through its validator into extra."""

        def protocol(table: dict[str, Any], key_path: str) -> dict[str, Any]:
            if table.get("kind") not in ("bsp", "ssp"):
                raise TopologyError(f"{key_path}.kind", f"unknown protocol {table.get('kind')!r}")
            return {"staleness": 0, **table}

        register_section("protocol", protocol)
        register_section("protocol", protocol)  # idempotent
        t = load(MINIMAL + '[protocol]\nkind = "ssp"\n')
        assert t.extra == {"protocol": {"staleness": 0, "kind": "ssp"}}
        assert load(t.to_toml()) == t
        assert t == Topology(ClusterSpec("c"), (NodeSpec("n"),), {"protocol": {"kind": "ssp"}})
        with pytest.raises(
            TopologyError, match=exact("<string>:7: protocol.kind: unknown protocol 'x'")
        ):
            load(MINIMAL + '[protocol]\nkind = "x"\n')
        with pytest.raises(
            TopologyError, match=r"^<string>:1: protocol: expected a table, got int"
        ):
            load("protocol = 3\n" + MINIMAL)

    def test_register_section_refuses_conflicts(self, sections: None) -> None:
        """Reserved names and a second validator for the same name are refused."""
        register_section("data", lambda table, key: table)
        with pytest.raises(ValueError, match=r"^section 'data' is already registered"):
            register_section("data", lambda table, key: table)
        with pytest.raises(ValueError, match=r"^invalid section name 'node'"):
            register_section("node", lambda table, key: table)


@attrs.frozen
class Adder:
    """A small attrs actor class to check args against."""

    count: int
    scale: float = 1.0
    label: str = "x"
    verbose: bool = False
    tags: list[str] = attrs.field(factory=list)
    limit: int | None = None
    _secret: int = 0
    loose: int = attrs.field(default=0, converter=int)
    cache: dict[str, int] = attrs.field(init=False, factory=dict)


def adder_topology(args: dict[str, Any], kind: str = "adder") -> Topology:
    text = MINIMAL + f'[[node.actor]]\nname = "a"\nkind = "{kind}"\n[node.actor.args]\n'
    text += "".join(f"{k} = {v}\n" for k, v in args.items())
    return load(text)


class TestCheck:
    def test_sound_args_pass(self, kinds: None) -> None:
        """Right-typed args pass; an int is accepted for a float; aliases of private fields work."""
        registry.register("actor", "adder", Adder)
        t = adder_topology({"count": 1, "scale": 2, "tags": '["a"]', "limit": 3, "secret": 1})
        t.check()
        assert check_topology(t) == []

    def test_unknown_arg_names_valid_fields(self, kinds: None) -> None:
        """An unknown argument names the class's init fields and the closest one."""
        registry.register("actor", "adder", Adder)
        msg = (
            "<string>:10: node[0].actor[0].args.cout: unknown argument for actor kind 'adder' "
            "(did you mean 'count'?) (valid arguments: count, label, limit, loose, scale, "
            "secret, tags, verbose)"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            adder_topology({"cout": 1}).check()

    def test_missing_required_arg(self, kinds: None) -> None:
        """A field without a default must be given; reported at the args table."""
        registry.register("actor", "adder", Adder)
        msg = (
            "<string>:9: node[0].actor[0].args.count: missing required argument for actor "
            "kind 'adder' (expected an integer)"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            adder_topology({"label": '"y"'}).check()

    def test_wrong_arg_types_all_reported(self, kinds: None) -> None:
        """check_topology lists every badly typed argument, in order, with lines."""
        registry.register("actor", "adder", Adder)
        t = adder_topology(
            {"count": "true", "scale": '"big"', "tags": "[1]", "limit": '"x"', "loose": '"7"'}
        )
        assert [str(p) for p in check_topology(t)] == [
            "<string>:10: node[0].actor[0].args.count: expected an integer, got boolean true",
            "<string>:11: node[0].actor[0].args.scale: expected a number, got string 'big'",
            "<string>:12: node[0].actor[0].args.tags: expected an array of strings, got array [1]",
            "<string>:13: node[0].actor[0].args.limit: expected an integer, got string 'x'",
        ]

    def test_unknown_kind(self, kinds: None) -> None:
        """An unknown kind is reported with the registry's message at the kind's line."""
        registry.register("actor", "adder", Adder)
        msg = (
            "<string>:8: node[0].actor[0].kind: unknown actor kind 'addr' (expected one of: "
            "adder, or a dotted path 'pkg.module:Class')"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            adder_topology({}, kind="addr").check()

    def test_python_topology_errors_have_no_location(self, kinds: None) -> None:
        """Checking a topology built in Python reports the key path alone."""
        t = Topology(ClusterSpec("c"), (NodeSpec("n", (ActorSpec("a", "fractions:Nope"),)),))
        msg = (
            "node[0].actor[0].kind: cannot import actor kind 'fractions:Nope' "
            "(AttributeError: module 'fractions' has no attribute 'Nope')"
        )
        with pytest.raises(TopologyError, match=exact(msg)):
            t.check()
        t.check(resolve_kinds=False)

    def test_non_attrs_class_args_not_checked(self, kinds: None) -> None:
        """Args of a class that is not an attrs class are left to the class."""
        t = Topology(ClusterSpec("c"), (NodeSpec("n", (ActorSpec("a", "fractions:Fraction"),)),))
        assert check_topology(t) == []

    def test_loading_does_not_resolve_kinds(self, kinds: None) -> None:
        """Loading a file with an unknown kind succeeds; only check() complains."""
        t = adder_topology({}, kind="nowhere.module:Thing")
        assert len(check_topology(t)) == 1


class TestRegistry:
    def test_register_and_resolve(self, kinds: None) -> None:
        """A registered class resolves by name; known() lists names sorted."""
        registry.register("actor", "pinger", Adder)
        registry.register("actor", "echo", Adder)
        registry.register("actor", "echo", Adder)  # idempotent
        assert registry.resolve("actor", "echo") is Adder
        assert registry.known("actor") == ["echo", "pinger"]
        assert registry.known("model") == []

    def test_conflicting_registration(self, kinds: None) -> None:
        """Re-registering a name to another target is a ValueError naming both."""
        registry.register("protocol", "ssp", "fractions:Fraction")
        msg = (
            "protocol kind 'ssp' is already registered to 'fractions:Fraction', "
            "not 'fractions:Decimal'"
        )
        with pytest.raises(ValueError, match=exact(msg)):
            registry.register("protocol", "ssp", "fractions:Decimal")

    def test_bad_registrations(self, kinds: None) -> None:
        """Malformed names and targets are refused at registration."""
        with pytest.raises(ValueError, match=r"^invalid actor kind name '1x'"):
            registry.register("actor", "1x", Adder)
        with pytest.raises(ValueError, match=r"^invalid target 'fractions\.Fraction' for actor"):
            registry.register("actor", "f", "fractions.Fraction")
        with pytest.raises(TypeError, match=r"^target for actor kind 'f' must be a class"):
            registry.register("actor", "f", 3)  # type: ignore[arg-type]

    def test_lazy_target_imported_on_resolve(
        self, kinds: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A lazy string target is imported only when first resolved."""
        (tmp_path / "actorml_lazy_probe.py").write_text("class Probe:\n    pass\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        try:
            registry.register("actor", "probe", "actorml_lazy_probe:Probe")
            assert "actorml_lazy_probe" not in sys.modules
            cls = registry.resolve("actor", "probe")
            assert cls.__name__ == "Probe"
            assert registry.resolve("actor", "probe") is cls
        finally:
            sys.modules.pop("actorml_lazy_probe", None)

    def test_dotted_path(self, kinds: None) -> None:
        """An unregistered 'pkg.module:Class' path resolves by import, nested names too."""
        import collections

        assert registry.resolve("model", "collections:OrderedDict") is collections.OrderedDict
        assert registry.resolve("model", "email.message:Message.__class__") is type

    def test_unknown_kind_message(self, kinds: None) -> None:
        """An unknown name lists the registered kinds and the dotted-path form."""
        for name in ("echo", "pinger", "ponger"):
            registry.register("actor", name, Adder)
        msg = (
            "unknown actor kind 'pnger' (expected one of: echo, pinger, ponger, "
            "or a dotted path 'pkg.module:Class')"
        )
        with pytest.raises(UnknownKind, match=exact(msg)):
            registry.resolve("actor", "pnger")
        assert isinstance(UnknownKind("a", "b", "c"), LookupError)

    def test_unimportable_paths(self, kinds: None) -> None:
        """A missing module, missing attribute or non-class names the path and the error."""
        msg = (
            "cannot import actor kind 'actorml_no_such_pkg.mod:Thing' "
            "(ModuleNotFoundError: No module named 'actorml_no_such_pkg')"
        )
        with pytest.raises(UnknownKind, match=exact(msg)):
            registry.resolve("actor", "actorml_no_such_pkg.mod:Thing")
        with pytest.raises(UnknownKind, match=r"^cannot import actor kind 'os:Nope' \(Attr"):
            registry.resolve("actor", "os:Nope")
        msg = "actor kind 'os.path:join' is not a class (got function)"
        with pytest.raises(UnknownKind, match=exact(msg)):
            registry.resolve("actor", "os.path:join")
        with pytest.raises(UnknownKind, match=r"^invalid dotted path 'a:b:c' for actor kind"):
            registry.resolve("actor", "a:b:c")

    def test_broken_lazy_registration(self, kinds: None) -> None:
        """A registered lazy target that fails to import names both the kind and target."""
        registry.register("actor", "ghost", "actorml_no_such_pkg:Ghost")
        with pytest.raises(UnknownKind, match=r"^cannot import actor kind 'ghost' from 'actorml_"):
            registry.resolve("actor", "ghost")

    def test_kinds_is_a_live_view(self, kinds: None) -> None:
        """kinds(group) maps names to classes, sees later registrations, and is read-only."""
        view = registry.kinds("model")
        assert dict(view) == {}
        registry.register("model", "adder", Adder)
        registry.register("model", "lazy", "fractions:Fraction")
        assert list(view) == ["adder", "lazy"]
        assert view["lazy"].__name__ == "Fraction"
        assert "nope" not in view
        with pytest.raises(TypeError):
            view["x"] = Adder  # type: ignore[index]

    def test_builtins_register_every_group(self) -> None:
        """The built-in list names every group's kinds, models and optimisers included."""
        assert registry.known("model") == ["logreg", "mlp", "softmax", "svm"]
        assert registry.known("optimizer") == ["adagrad", "adam", "rmsprop", "sgd"]
        assert registry.known("protocol") == ["asp", "bsp", "essp", "ssp"]

    def test_topology_import_does_not_import_roles(self) -> None:
        """Importing actorml.topology imports no role, protocol or model, nor numba or sklearn."""
        code = (
            "import sys, actorml.topology; print(sorted(m for m in sys.modules if m.split('.')[0]"
            " in ('numba', 'sklearn') or m.startswith(('actorml.actors', 'actorml.models',"
            " 'actorml.protocols'))))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "[]", out.stderr


_FRAGMENTS = [
    "[cluster]",
    'name = "c"',
    "name = 'n2'",
    "[[node]]",
    'name = "n1"',
    "[[node.actor]]",
    'kind = "echo"',
    "[node.supervisor]",
    "[cluster.supervisor]",
    'strategy = "one_for_all"',
    "max_restarts = -1",
    "mailbox_size = 0",
    "args = { x = 1 }",
    "[node.actor.args]",
    'doc = """',
    '"""',
    'transport = "tcp"',
    "base_port = 70000",
    "[protocol]",
    "a.b = 1",
    '"q.k" = 2',
    "xs = [",
    "]",
    "node = []",
    "supervisor.within_s = 0",
    "heartbeat_deadline_s = 0.1",
    "address = 'tcp://h:1'",
    "restart = 'temporary'",
]

_NAMES = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_.-]{0,10}\Z")
_TOML_VALUES = st.recursive(
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.booleans(),
        st.text(string.printable, max_size=10),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _topologies(draw: st.DrawFn) -> Topology:
    names = draw(st.lists(_NAMES, min_size=2, max_size=8, unique=True))
    split = draw(st.integers(1, len(names) - 1))
    nodes = tuple(
        NodeSpec(
            name,
            supervisor=SupervisorSpec(
                strategy=draw(st.sampled_from(list(Strategy))),
                max_restarts=draw(st.integers(0, 10)),
            ),
            actors=(
                ActorSpec(
                    f"{name}-actor",
                    draw(st.sampled_from(["echo", "pkg.mod:Cls"])),
                    restart=draw(st.sampled_from(list(Restart))),
                    args=draw(st.dictionaries(st.text(max_size=6), _TOML_VALUES, max_size=3)),
                    mailbox_size=draw(st.none() | st.integers(1, 100)),
                ),
            ),
        )
        for name in names[split:]
    )
    return Topology(
        ClusterSpec(names[0], log_level=draw(st.sampled_from(["debug", "info"]))), nodes
    )


_VALUES = ['"x"', "0", "-1", "1.5", "true", "[]", "{}", '"one_for_none"', "70000", "'a b'", "nan"]


@st.composite
def _mutated_pingpong(draw: st.DrawFn) -> str:
    """PINGPONG with lines dropped, values replaced and fragments inserted."""
    lines = []
    for line in PINGPONG.split("\n"):
        action = draw(st.sampled_from(["keep"] * 20 + ["drop", "value", "insert"]))
        if action == "value" and " = " in line:
            line = line.split(" = ")[0] + " = " + draw(st.sampled_from(_VALUES))
        elif action == "insert":
            lines.append(draw(st.sampled_from(_FRAGMENTS)))
        if action != "drop":
            lines.append(line)
    return "\n".join(lines)


_GARBAGE = st.one_of(
    _mutated_pingpong(),
    st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=20)), max_size=25).map(
        "\n".join
    ),
)


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(_GARBAGE)
    def test_garbage_loads_or_raises_topology_error(self, text: str) -> None:
        """Any text either loads (and round-trips) or raises TopologyError, never another error."""
        try:
            t = Topology.from_toml_string(text)
        except TopologyError as err:
            assert "\n" not in str(err)
            assert err.line is None or 1 <= err.line <= text.count("\n") + 1
        else:
            again = Topology.from_toml_string(t.to_toml())
            assert again == t or again.to_toml() == t.to_toml()  # nan in args != itself

    @settings(max_examples=100, deadline=None)
    @given(_topologies())
    def test_python_topologies_round_trip(self, t: Topology) -> None:
        """Any topology built in Python survives to_toml and from_toml_string equal."""
        assert Topology.from_toml_string(t.to_toml()) == t
