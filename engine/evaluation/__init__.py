"""Building blocks of ``nasname evaluate`` (the command itself is ``engine.evaluate``).

``manifest`` reads the labelled image list, ``design`` splits it into gallery / mated / non-mated
probes, ``extraction`` runs an extractor over every image, ``scoring`` compares templates,
``analysis`` turns scores into the reported figures, ``pairs`` handles LFW pairs files, ``chimeric``
builds fused face+iris subjects, ``plots`` draws the curves.
"""
