# CycloneDX 1.5 SBOM of the crates linked into the binary, from `cargo metadata` (hack/release.sh):
# the root package's normal dependencies, transitively; dev- and build-dependencies are not in
# the binary. Arguments: $created (ISO 8601 time of the commit), $serial (32 hex digits).

def purl: "pkg:cargo/\(.name)@\(.version)";
# A dependency edge that ends up in the binary: a normal (not dev, not build) dependency.
def linked: any(.dep_kinds[]; .kind == null);

(.packages | map({key: .id, value: .}) | from_entries) as $packages
| (.resolve.nodes | map({key: .id, value: .}) | from_entries) as $nodes
| .resolve.root as $root
| def closure:
    . as $seen
    | ([$seen[] | $nodes[.].deps[] | select(linked) | .pkg] + $seen | unique) as $next
    | if ($next | length) == ($seen | length) then $seen else ($next | closure) end;
  ([$root] | closure) as $ids
| def component($type):
    {type: $type, "bom-ref": purl, name, version, purl: purl}
    + (if .license then {licenses: [{expression: .license}]} else {} end)
    + (if .description then {description: (.description | gsub("\\s+"; " "))} else {} end);
{
  bomFormat: "CycloneDX",
  specVersion: "1.5",
  serialNumber: ("urn:uuid:" + ($serial | "\(.[0:8])-\(.[8:12])-\(.[12:16])-\(.[16:20])-\(.[20:32])")),
  version: 1,
  metadata: {
    timestamp: $created,
    component: ($packages[$root] | component("application"))
  },
  components: [$ids[] | select(. != $root) | $packages[.] | component("library")]
    | sort_by(.name, .version),
  dependencies: [$ids[] | {
      ref: ($packages[.] | purl),
      dependsOn: [$nodes[.].deps[] | select(linked) | $packages[.pkg] | purl] | sort
    }] | sort_by(.ref)
}
