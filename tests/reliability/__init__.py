"""reliability tier"""
