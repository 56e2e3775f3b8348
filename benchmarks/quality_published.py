"""The published numbers benchmarks/quality.py's tables compare against, with their sources.

Each is (name, protocol variant, Recall@10, NDCG@10, source, which data it used); a number is
only compared with runs of its own variant ("seen removed" or "all items").
"""
# From shared/data/README.md (Recall@10 = HR@10: one target per user).
_THIS = "this ML-1M version (3,416 items)"
_RAW = "raw ML-1M (3,706 items), not this version"
_PUB = (("SASRec+ (full CE)", "seen removed", 0.3152, 0.1821, "Klenitskiy & Vasilev 2023", _THIS),
        ("SASRec+ (3,000 negatives)", "seen removed", 0.3159, 0.1857,
         "Klenitskiy & Vasilev 2023", _THIS),
        ("ICSRec", "seen removed", 0.3369, 0.2007, "Qin et al. 2024",
         _THIS + "; one checkpoint, max length 50, not reproduced elsewhere"),
        ("gSASRec", "seen removed", 0.3003, 0.1726, "Petrov & Macdonald 2023", _THIS),
        ("SASRec (BCE)", "seen removed", 0.2392, 0.1259, "Petrov & Macdonald 2023", _THIS),
        ("BERT4Rec", "not stated", 0.2821, 0.1516, "Petrov & Macdonald 2022",
         _THIS + "; the data README does not state its variant"),
        ("SASRec (HSTU paper)", "all items", 0.2853, 0.1603, "Zhai et al. 2024 (HSTU)", _RAW),
        ("HSTU", "all items", 0.3097, 0.1720, "Zhai et al. 2024 (HSTU)", _RAW),
        ("HSTU-large", "all items", 0.3294, 0.1893, "Zhai et al. 2024 (HSTU)", _RAW))
_BEAUTY = "this file (S3-Rec 5-core, 12,101 items)"
_PUB_BEAUTY = (("SASRec+SS (256 negatives)", "seen removed", 0.0921, 0.0531, "eSASRec paper 2025",
                _BEAUTY),
               ("eSASRec", "seen removed", 0.0928, 0.0523, "eSASRec paper 2025", _BEAUTY),
               ("BSARec", "seen removed", 0.1008, 0.0611, "Shin et al. 2024 (official log)",
                _BEAUTY))
_entries = lambda pub: {n: {"variant": v, "recall@10": r, "ndcg@10": g, "source": s, "note": t}
                        for n, v, r, g, s, t in pub}
PUBLISHED = {"ml1m": _entries(_PUB), "beauty": _entries(_PUB_BEAUTY),
             "ml100k": {}}  # The data README gives none for ML-100K.
