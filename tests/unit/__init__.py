"""unit tier"""
