//! credential-providers-copy: `cp -R SRC/. DEST` and nothing else, installed as `/bin/cp` in
//! the credential-providers image, so the chart's init container (which runs
//! `cp -R <copyFrom>/. <plugin directory>`) needs no shell or coreutils in that image.
//! Regular files keep their permission bits; directories are created; anything else is refused.

use std::fs;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (source, dest) = match args.as_slice() {
        [flag, source, dest] if flag == "-R" || flag == "-r" => (source, dest),
        _ => {
            eprintln!("usage: cp -R SOURCE DEST (the credential-providers image's minimal copy)");
            std::process::exit(2);
        }
    };
    // `SRC/.` copies the contents of SRC into DEST, as cp does.
    let source = source.strip_suffix("/.").unwrap_or(source);
    if let Err(error) = copy_tree(Path::new(source), Path::new(dest)) {
        eprintln!("cp: {error}");
        std::process::exit(1);
    }
}

fn copy_tree(source: &Path, dest: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dest)?;
    for entry in fs::read_dir(source)? {
        let entry = entry?;
        let target = dest.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        } else {
            return Err(std::io::Error::other(format!(
                "{} is neither a file nor a directory",
                entry.path().display()
            )));
        }
    }
    Ok(())
}
