//! Image commands beyond pull: tag, history, filters, pull -a / by digest, prune, system df.

mod common;

use common::*;

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn tag_history_and_filters() {
    // Its own VCH: the other tests of this file tag and untag the shared one's images while
    // this one compares listings.
    let vch = OwnVch::create("e2e-images", &[]);
    let reg = registry();
    let image = vch.image.clone();
    let mine = format!("{reg}/mine:v1");
    vch.client.ok(&["tag", &image, &mine]);
    let listed = vch.client.ok(&[
        "images",
        "--filter",
        &format!("reference={reg}/mine"),
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    assert_eq!(listed.trim(), mine);
    // vic keeps no intermediate images (layers are not images): -a lists the same.
    let all = vch.client.ok(&["images", "-a", "-q", "--no-trunc"]);
    assert!(!all.trim().is_empty());
    assert_eq!(all, vch.client.ok(&["images", "-q", "--no-trunc"]));
    let same = vch.client.ok(&["images", "-q", &mine]);
    assert_eq!(
        same,
        vch.client.ok(&["images", "-q", &format!("{image}:latest")]),
        "a tag names the same image"
    );

    let rows = vch
        .client
        .ok(&["history", "--format", "{{.CreatedBy}}|{{.Size}}", &image]);
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].starts_with("mkimages.py layer 1|"),
        "newest first: {rows:?}"
    );
    assert!(rows[1].starts_with("mkimages.py layer 0|"), "{rows:?}");
    assert!(
        rows[1].contains("MB"),
        "the busybox layer has its size: {rows:?}"
    );

    assert_eq!(
        vch.client.ok(&["images", "-q", "--filter", "label=nosuch"]),
        ""
    );
    let out = vch.client.ok(&["rmi", &mine]);
    assert_eq!(out.trim(), format!("Untagged: {mine}"));
    let o = vch.client.run(&["tag", "nosuchimage", &mine]);
    assert!(
        stderr(&o).contains("No such image: nosuchimage"),
        "{}",
        stderr(&o)
    );
    vch.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn pull_all_tags_and_by_digest() {
    let reg = registry();
    let out = ok(&["pull", "-a", &format!("{reg}/busybox")]);
    assert!(
        out.contains(&format!("for {reg}/busybox\n"))
            || out.contains(&format!("for {reg}/busybox\r")),
        "{out}"
    );
    let tags = ok(&["images", &format!("{reg}/busybox"), "--format", "{{.Tag}}"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["1.0", "latest"]);

    let digests = ok(&[
        "images",
        "--digests",
        "--format",
        "{{.Digest}}",
        &format!("{reg}/busybox:latest"),
    ]);
    let digest = digests.trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let by_digest = format!("{reg}/busybox@{digest}");
    let out = ok(&["pull", &by_digest]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(out.contains("Status: "), "{out}");
    let inspect = ok(&["image", "inspect", "--format", "{{.Id}}", &by_digest]);
    assert!(inspect.trim().starts_with("sha256:"));
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn prune_removes_dangling_images_and_df_counts() {
    let reg = registry();
    let multi = format!("{reg}/busybox-multi");
    ok(&["pull", "--platform", "linux/arm64", &multi]);
    let arm = ok(&["images", "-q", "--no-trunc", &multi])
        .trim()
        .to_string();
    ok(&["pull", "--platform", "linux/amd64", &multi]);
    let dangling = ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    assert!(
        dangling.lines().any(|l| l == arm),
        "the arm64 image lost its tag: {dangling}"
    );
    let out = ok(&["image", "prune", "-f"]);
    assert!(
        out.contains(&format!("deleted: {arm}")) || out.contains(&format!("Deleted: {arm}")),
        "{out}"
    );
    assert_eq!(ok(&["images", "-q", "--filter", "dangling=true"]), "");
    let df = ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.lines().any(|l| l.starts_with("Images ")), "{df}");
    assert!(df.lines().any(|l| l.starts_with("Containers ")), "{df}");
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn push_then_pull_back() {
    let reg = registry();
    let image = busybox();
    let repo = format!("{reg}/pushed-{}", std::process::id());
    let target = format!("{repo}:v1");
    let id = ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    ok(&["tag", &image, &target]);

    let out = ok(&["push", &target]);
    assert!(
        out.contains(&format!("The push refers to repository [{repo}]")),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "layers are uploaded: {out}");
    let digest_line = out
        .lines()
        .find(|l| l.starts_with("v1: digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest line: {out}"));

    // Pushing again uploads nothing and names the same manifest.
    let again = ok(&["push", &target]);
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(!again.contains(": Pushed"), "{again}");
    assert!(again.contains(digest_line), "{again}");

    // Pulled back under another name after removing the tag: the same image.
    ok(&["rmi", &target]);
    let digest = digest_line.split_whitespace().nth(2).unwrap();
    ok(&["pull", &format!("{repo}@{digest}")]);
    let back = ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        &format!("{repo}@{digest}"),
    ]);
    assert_eq!(
        back.trim(),
        id.trim(),
        "the pushed image comes back unchanged"
    );
    let run = ok(&[
        "run",
        "--rm",
        &format!("{repo}@{digest}"),
        "echo",
        "round-trip",
    ]);
    assert_eq!(run.trim(), "round-trip");

    let o = docker(&["push", &format!("{reg}/never-tagged:v9")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "An image does not exist locally with the tag: {reg}/never-tagged"
        )),
        "{}",
        stderr(&o)
    );
}
