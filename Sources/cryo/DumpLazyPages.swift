/// `cryo dump --lazy-pages` (CRIU: the dump keeps the tree frozen and serves its memory to a
/// lazy restore) is not built: the dump would have to hold the frozen tree and answer GETs
/// from its memory. Post-copy works from the images instead.
enum DumpLazyPages {
    static let refusal = """
        cryo dump --lazy-pages (serving pages from the frozen tree) is not supported. Post-copy from the images instead: \
        `cryo dump -t PID -D DIR`, then on the dump side `cryo page-server --lazy-pages -D DIR --port P`, \
        and on the restore side `cryo image make-lazy DIR COPY`, `cryo lazy-pages --page-server --address ADDR --port P -D COPY &`, \
        `cryo restore --lazy-pages -D COPY` (docs/LAZY.md).
        """
}
