"""Integer inference (README "Integer inference"): the float network a plan stands for
(`network`), calibration of every node's range on real inputs (`calibrate`), the integer graph
and its arithmetic contract (`ir`), its lowering (`lower`, `weighted`: one handler per op), the
int64 reference that runs it (`run`) and `qexport eval` (`command`).  C source of the integer
graph is qexport.csource."""
