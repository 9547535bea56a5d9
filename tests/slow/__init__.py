"""slow tier"""
